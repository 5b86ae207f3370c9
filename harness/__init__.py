"""esr-harness: measure efficient super-resolution entries the way the challenges define it."""
__version__ = "0.1.0"
