"""Experiments beyond one training (issue 16): ``seeds`` trains one config once per seed and keeps the seed
best on validation; ``sweep`` searches config keys with optuna and keeps the best trial's best checkpoint.
Both are training stages (``stage``) that ``pipeline.run`` calls in place of a single training. No click here.
"""
