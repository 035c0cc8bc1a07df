"""Command line: one module per command group; ``mtrs.cli.main:main`` is the entry point."""
