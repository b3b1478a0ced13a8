"""Scripts that measure the figures named in the issues (run them as files)."""
