"""Campaigns: records and status changes, the batch queue and its leases on the
database's clock, outcomes and counters (`records`); one batch's send (`sending`);
and the Ray task that runs it (`send_tasks`, the one module of `app/` that imports
Ray). Uses every lower package but chat, marketing, signup and reports.
"""
