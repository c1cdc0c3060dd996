"""Who may do what: operator accounts, roles, API keys, sign-in tokens and the audit
log. Uses only `app.core`.
"""
