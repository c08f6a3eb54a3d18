"""`pipeline bench ...`: the command group; each module in pipeline/benchmarks/ registers its
command on ``bench_app`` (``@bench_app.command("train")``) and is listed in cli._COMMAND_MODULES."""
from __future__ import annotations

import typer

from .cli import app

bench_app = typer.Typer(no_args_is_help=True, help="Side-by-side benchmarks that print ratios.")
app.add_typer(bench_app, name="bench")
