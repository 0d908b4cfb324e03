"""`musika-piano`, the command line (cyclopts): commands.py (the app, dataset, training, store
commands, `main`), options.py (what the commands share; the stages' Params models as flags),
app.py, evaluate.py and report.py (one command each).

`main` is re-exported here only because it is the console script's entry point
(`musika-piano = "flows.cli:main"` in pyproject.toml); everything else imports from the module
that defines it.
"""

from flows.cli.commands import main

__all__ = ["main"]
