"""Reactive marketing: the plan catalogue and counter-offers (keyed by the refusal
that caused them, fired after a cooldown, accepted once). Uses `app.core` and
`app.chat`.
"""
