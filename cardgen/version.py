"""The package version, alone in a leaf module so nothing needs the package face to read it."""

__version__ = "0.1.0"
