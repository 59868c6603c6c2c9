"""envlock: reproducible machine-learning environments.

A spec (``specs/NAME.toml``) is resolved into a hashed, canonical lock
(``specs/NAME.lock``) whose env ID is a pure function of its content.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
