"""channels.sms."""
