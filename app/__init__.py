"""operator-comms' domain, one package per capability. No Ray here except
`app.campaigns.send_tasks`; the layers (lowest first) are checked by import-linter:
core, observability, access, integrations, audience, channels, chat, marketing,
campaigns, signup, reports.
"""
