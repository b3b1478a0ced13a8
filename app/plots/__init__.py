"""PNG plots of runs (matplotlib Agg)."""
