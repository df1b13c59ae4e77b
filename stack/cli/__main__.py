"""``python -m stack.cli`` runs the ``confsync`` command."""

from stack.cli import main

main()
