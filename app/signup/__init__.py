"""Email signup by reply: the IMAP inbox, reading a message (signup, unsubscribe,
bounce, review), double opt-in and its records. Uses `app.core`, `app.audience`,
`app.channels` and `app.campaigns` (a signup's standing campaign).
"""
