"""Drift reports: is today's traffic still like the traffic the models were trained on, and are
the models still as good as when they were promoted?

`stats` holds the statistics as pure functions; `fields` turns a stored query into the fields
the checks compare; `report` gathers the windows from DuckDB and computes a report.
"""
