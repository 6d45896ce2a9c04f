"""The `coat-pipe` command line: thin commands, each one call into `stages.*` or `store_schema`.

Every command is a decorated function in the module of its area; importing the modules registers them.
"""

from __future__ import annotations

import stages.lab  # noqa: F401 - the lab hands the product its synth benchmark and the tiny twins' task words

# The order of these imports is the order of the commands in `coat-pipe --help`.
# isort: off
from pipeline.cli.app import app, reflow_help
from pipeline.cli import quickstart, corpus, extract, train, evaluate, store, bench  # noqa: F401 - they register
# isort: on

reflow_help(app)


def main() -> None:
    app()
