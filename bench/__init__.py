"""dfer-bench: train, evaluate, profile and report dynamic facial expression recognition methods."""

__version__ = "0.1.0"
