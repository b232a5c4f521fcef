"""Experiments: seeds, sweeps, reproduce, gate, energy."""
