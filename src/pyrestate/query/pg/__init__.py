"""The PostgreSQL wire protocol in front of the SQL engine (``psql -p 9071``).

The official server used to offer it on ``--pgsql-bind``; Restate's tour still runs
``psql`` against it. Only the protocol lives here: queries go to the same engine as the
admin API's ``POST /query``, and its Arrow answers are turned into text-format rows.
"""

from pyrestate.query.pg.listener import PgServer

__all__ = ["PgServer"]
