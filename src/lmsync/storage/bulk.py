"""Inserting many rows at once: COPY on PostgreSQL, executemany elsewhere.

The sync engine records hundreds of links, states and outcomes per transaction. psycopg sends
an executemany as one INSERT per row (pipelined); COPY streams them in one statement, which
costs the server a fraction of that. Values go through the columns' own bind processors, so a
row means exactly what it would mean in an INSERT (UTC datetimes, JSON ``null`` for None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import Table
from sqlalchemy.engine import Connection

# Below this many rows, the plain INSERT is as fast and needs no second code path.
COPY_MIN_ROWS = 20


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` inside the current transaction."""
    if not rows:
        return
    if connection.dialect.driver != "psycopg" or len(rows) < COPY_MIN_ROWS:
        connection.execute(table.insert(), list(rows))
        return
    dialect = connection.dialect
    names = list(rows[0])
    processors: list[Callable[[Any], Any] | None] = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    quote = dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    # The DBAPI connection of the current transaction: the rows land in it, or roll back with it.
    raw = cast("psycopg.Connection[Any]", connection.connection.dbapi_connection)
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    value if process is None else process(value)
                    for value, process in zip(
                        (row[name] for name in names), processors, strict=True
                    )
                ]
            )
