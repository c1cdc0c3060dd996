"""signup."""
