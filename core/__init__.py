"""Foundations every layer imports: configuration, errors, logging. Imports nothing of kaizend."""

__version__ = "0.1.0"
