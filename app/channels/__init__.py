"""The channels a message can go by, and everything specific to each: `email` (SMTP
sending, composing, open and click tracking) and `sms` (SMPP encoding and sessions, the
inbox, delivery receipts); `templates` renders for all of them in a bounded sandbox.
Uses `app.core` and `app.audience`.
"""
