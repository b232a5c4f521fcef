"""Speed, throughput and memory: timers, inputs, scenarios, the run's stage and ``cardgen bench``."""
