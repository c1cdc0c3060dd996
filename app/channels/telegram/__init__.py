"""Telegram: the Bot API client, the channel, the signed deep link that ties a chat to a
customer, and the updates the Bot API posts to our webhook."""
