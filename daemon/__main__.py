"""`python -m kaizend.daemon` is the `kaizend` command."""

from kaizend.daemon.cli import main

main()
