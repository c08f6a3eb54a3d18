"""`pipeline bench ...`: one command per benchmark module in pipeline/benchmarks/."""
from __future__ import annotations

import importlib
import json

import typer

from .cli import app

bench_app = typer.Typer(no_args_is_help=True, help="Side-by-side benchmarks that print ratios.")
app.add_typer(bench_app, name="bench")

BENCHMARKS = ("train", "labeling", "distill")


def _run(name: str, **options) -> dict:
    module = importlib.import_module(f"pipeline.benchmarks.{name}")
    result = module.run(**options)
    typer.echo(json.dumps(result, indent=2, sort_keys=True))
    return result
