"""The training machinery `train.py` wires together: the typed config, the schedule, gradient
caching, the distributed pieces, the training table, checkpoints, model selection and the report."""
