"""Web push: the VAPID keys, the channel, and the customers' subscriptions."""
