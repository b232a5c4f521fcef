"""Experiments beyond one training (issue 16): ``seeds`` trains one config once per seed and keeps the seed
best on validation; ``sweep`` searches config keys with optuna and keeps the best trial's best checkpoint.
Both are training stages (``stage``) that ``pipeline.run`` calls in place of a single training. ``reproduce``
re-runs a recorded run and reports drift; ``gate`` judges the ship rules (compare.require); ``general`` scores
both models on an out-of-domain set (the forgetting check); ``energy`` wraps stages in codecarbon's offline
tracker. No click here.
"""
