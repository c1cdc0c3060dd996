"""WhatsApp: the Cloud API client, the channel, and the webhook the Cloud API posts
customers' messages and messages' statuses to."""
