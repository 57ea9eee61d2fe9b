"""``python -m gaitbench`` = the ``gaitbench`` command."""

from .cli import main

main()
