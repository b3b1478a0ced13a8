"""Datasets: built-in sets, parsing of JSON/CSV/Parquet uploads, transforms, summaries, array encodings."""
