"""User-facing error type: a mistake in config, data or request, reported in one sentence."""

from __future__ import annotations


class MtrsUserError(Exception):
    """A mistake by the user (bad config, bad data, bad request).

    The command line prints the message and exits with code 2; the service answers 4xx.
    The message must name the file, key, column or row at fault.
    """
