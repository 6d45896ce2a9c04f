"""`python -m pipeline.cli ...` is `coat-pipe ...`."""

from pipeline.cli import main

main()
