"""Base versus fine-tuned: the run's comparison stage and ``cardgen compare``."""
