"""The customer chatbot: flows as data (`flows/*.yaml`), sessions and their inbox,
a replica's turns, SMS conversations, and proving who a chatting customer is. Uses
`app.core`, `app.observability`, `app.audience` and `app.channels`.
"""
