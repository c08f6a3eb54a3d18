"""The ``pipeline`` command (a typer app). Command modules register themselves on ``app``."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Head-pose knowledge distillation with a cached convolutional-ensemble teacher.")

# Modules that add commands to `app` (spaCy style: each command lives with its code).
_COMMAND_MODULES: tuple[str, ...] = (
    "pipeline.bench_cli",
    "pipeline.synth.cli",
    "pipeline.inspect_cache",
    "pipeline.benchmarks.train",
    "pipeline.benchmarks.labeling",
    "pipeline.benchmarks.distill",
    "pipeline.kd_rotation",
    "pipeline.benchmarks.all",
)


@app.command("run-stage")
def run_stage(
    name: str = typer.Argument(..., help="DVC stage name, e.g. prepare, train-teacher, ensemble-labels"),
    item: Optional[str] = typer.Argument(None, help="foreach item (e.g. a student backbone)"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    set_: List[str] = typer.Option([], "--set", help="override a param: block.key=value"),
):
    """Run one DVC stage by name (what every dvc.yaml cmd calls)."""
    from stages import STAGES, get_stage
    from .config import ConfigError
    from .errors import PipelineError

    try:
        module = get_stage(name)
    except KeyError:
        typer.echo(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}", err=True)
        raise typer.Exit(2)
    try:
        if item is None:
            module.run(params, set_)
        else:
            module.run(params, set_, item=item)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2)
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


@app.command("dvc-deps")
def dvc_deps(check: bool = typer.Option(False, "--check", help="only report; exit 1 if dvc.yaml is out of date")):
    """Write each stage's code deps into dvc.yaml from the import graph of its entry point."""
    from .dvc_deps import sync_dvc_yaml

    problems = sync_dvc_yaml(write=not check)
    for stage, files in problems.items():
        typer.echo(f"{stage}: {'differs in' if check else 'updated:'} {', '.join(files)}")
    if check and problems:
        typer.echo("dvc.yaml code deps are out of date: run `pipeline dvc-deps`", err=True)
        raise typer.Exit(1)


def main():
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)
    app()
