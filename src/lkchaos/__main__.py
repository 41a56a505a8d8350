"""``python -m lkchaos`` runs the ``lkchaos`` command."""

from lkchaos.cli import main

main()
