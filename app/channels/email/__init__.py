"""channels.email."""
