"""Embedded services for local mode and tests: a SecantusDB server (`embedded.mongo`)
and an SMTP sink (`embedded.smtp_sink`) on 127.0.0.1, started by the local-services
actor (`actors.local_services`) when MongoDB or SMTP is not configured. Real servers on
real sockets, so local runs and tests speak the same protocols as production.
"""
