"""``python -m mtrs``: the ``mtrs`` command (what ``torchrun -m mtrs train …`` starts)."""

from mtrs.cli.main import main

main()
