"""The core every capability uses and that uses none of them: settings (`config`), the
runtime handed to every process, the database accessor and its indexes, paging, statuses,
bulk writes, the report roll-ups and their repair, ledger ids, signed customer tokens and
links, the egress policy and rate buckets, and the API models' shared bases.
"""
