"""Shouts text: the requirements example's stand-in for a real dependency."""

__version__ = "1.0"


def shout(text):
    return text.upper() + "!"
