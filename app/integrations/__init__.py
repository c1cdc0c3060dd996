"""Webhooks to the operator's systems: endpoints, signed messages, retries, and the
outbox by which a state change carries its event in the same write. Uses only
`app.core`.
"""
