"""Jobs: what wakes the sync engine. In-process by default (one machine, SQLite); on PostgreSQL,
optionally procrastinate jobs run by any number of ``lmsync worker`` processes."""
