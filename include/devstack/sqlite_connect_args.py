"""``[database] sql_alchemy_connect_args`` for the local stack's SQLite metadata DB.

Every component of the stack writes to one SQLite file; under load a writer can hold the lock for seconds.
sqlite3's default 5-s busy timeout then fails writes such as a 30-day backfill's ("database is locked");
waiting up to a minute lets them queue instead. A PostgreSQL metadata DB does not need this.
"""

CONNECT_ARGS = {"timeout": 60}
