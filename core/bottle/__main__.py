"""``python -m bottle`` is the ``bottle`` command."""

from bottle.cli import main

main()
