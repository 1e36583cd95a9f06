"""`python -m daemon` is the `kaizend` command."""

from daemon.cli import main

main()
