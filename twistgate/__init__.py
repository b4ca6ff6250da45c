"""twistgate: an API gateway on Twisted."""

from twistgate._version import __version__

__all__ = ["__version__"]
