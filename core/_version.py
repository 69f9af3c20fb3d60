"""The package version, in a leaf module that both the package face and the trainer read."""

__version__ = "0.1.0"
