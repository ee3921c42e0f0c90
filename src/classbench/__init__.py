"""classbench: which model classifies your images best, how fast, and at what cost."""

__version__ = "0.1.0"
