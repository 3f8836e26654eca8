"""PostgreSQL/TimescaleDB adapter: migrations and the store. All SQL lives here."""
