"""Persistence: the DuckDB event store, read-only access for operators, Parquet exports.

Storage imports nothing from handlers, models or daemon.
"""
