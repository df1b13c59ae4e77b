"""``python -m confsync`` runs the ``confsync`` command."""

from confsync.cli import main

main()
