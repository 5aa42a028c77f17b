"""``python -m lmsync`` runs the command line."""

from lmsync.cli import main

main()
