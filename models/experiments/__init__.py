"""A/B experiments: statistics, ramp, decisions."""
