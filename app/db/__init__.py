"""The database: engine and sessions, tables, migrations, ids, clock and outage errors."""
