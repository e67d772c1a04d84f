"""One module per command-line verb.

Each module defines ``NAME`` (the verb), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. :mod:`acla_nas.cli.main` discovers them; nothing here imports the CLI.
"""
