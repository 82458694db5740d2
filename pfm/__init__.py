"""pfm: a benchmark suite for class-level machine unlearning around pre-forgettable models."""

__version__ = "0.1.0"
