"""Learning: tasks, training, evaluation, registry."""
