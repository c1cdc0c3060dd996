"""SMS: SMPP 3.4 encoding and transmitter sessions, the inbox of customer texts, and
delivery receipts."""
