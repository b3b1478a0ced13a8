"""Evaluation of a network's weights on data, without training (pure computation)."""
