"""Email: SMTP sending over pooled connections, composing a campaign or offer email,
and open and click tracking."""
