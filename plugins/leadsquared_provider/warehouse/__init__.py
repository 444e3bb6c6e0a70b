"""The user's warehouse (any common-sql ``DbApiHook`` connection), one module per job:

- :mod:`.candidates`: the candidate query, only read, streamed, in a read-only session where the driver can;
- :mod:`.audit_export`: the optional export of a run's audit rows, the one write (docs/audit-export.md);
- :mod:`.drivers`: which DB-API driver a connection is and what its errors mean, for both.
"""
