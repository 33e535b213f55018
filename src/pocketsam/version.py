"""The package version (one home, imported by ``pocketsam`` and by anything that records it)."""

__version__ = "0.1.0"
