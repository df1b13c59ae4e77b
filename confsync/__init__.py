"""confsync: keeps a third-party video-conferencing service in step with Google Calendar.

This package is the shared kernel: the message contracts, errors, settings, logging, ports
and state records that every stage (``ingest``, ``processors``, ``publishers``) builds on.
It imports no stage and not ``stack``, the composition root (docs/ARCHITECTURE.md).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("confsync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
