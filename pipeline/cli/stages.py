"""``pipeline run-stage NAME`` (what every dvc.yaml cmd calls) and ``pipeline dvc-deps``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import enum

import typer

from ..project import ProjectError, project_root, stage_files
from .app import app, exits_on_errors


def _stage_names() -> list[str]:
    try:
        return list(stage_files(project_root()))
    except ProjectError:
        return []


StageName = enum.Enum("StageName", {name: name for name in _stage_names()}, type=str)


@app.command("run-stage")
@exits_on_errors
def run_stage(
    name: Annotated[StageName, typer.Argument(show_default=False, help="DVC stage (dvc.yaml)")],
    item: Annotated[Optional[str], typer.Argument(help="matrix item of distill: a student run <backbone>-<method>-seed<k>, <backbone>-<method> (all its seeds) or <backbone> (all its runs)")] = None,
    params: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml"),
    set_: Annotated[List[str], typer.Option("--set", help="override a param, e.g. --set train_teacher.lr=3e-4 "
                                            "(keys: the stage's block in params.yaml)")] = [],
):
    """Run one DVC stage by name, as `dvc repro` does (stages/<name>.py of the project)."""
    import time

    from ..project import load_stage

    module = load_stage(name.value)
    start = time.perf_counter()
    if item is None:
        module.run(params, set_)
    else:
        module.run(params, set_, item=item)
    label = name.value + (f"@{item}" if item else "")
    typer.echo(f"{label}: done in {time.perf_counter() - start:.1f} s")


@app.command("dvc-deps")
@exits_on_errors
def dvc_deps(check: Annotated[bool, typer.Option("--check", help="only report; exit 1 if dvc.yaml is out of date")] = False):
    """Write each stage's code deps into dvc.yaml from the import graph of its entry point."""
    from ..dvc_deps import sync_dvc_yaml

    problems = sync_dvc_yaml(write=not check)
    for stage, files in problems.items():
        typer.echo(f"{stage}: {'differs in' if check else 'updated:'} {', '.join(files)}")
    if check and problems:
        typer.echo("dvc.yaml code deps are out of date: run `pipeline dvc-deps`", err=True)
        raise typer.Exit(1)


@app.command("profile")
@exits_on_errors
def profile(name: Annotated[str, typer.Argument(help="profiles/<name>.yaml (e.g. paper), or a file of overrides")],
            params: Annotated[Path, typer.Option("--params", help="params file to change in place")] = Path("params.yaml")):
    """Switch params.yaml to a profile: merge its overrides in place (comments kept)."""
    from ..profiles import apply_profile

    from ..inputs import missing_inputs

    changed = apply_profile(name, params)
    typer.echo(f"{params}: {len(changed)} keys set from profile {name}" + (f" ({', '.join(changed)})" if changed else ""))
    missing = missing_inputs(params)
    if missing:
        typer.echo(f"before `dvc repro`, {len(missing)} inputs of this profile are missing:\n  "
                   + "\n  ".join(missing), err=True)


@app.command("check-inputs")
@exits_on_errors
def check_inputs(params: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml")):
    """Report every missing input of the params (datasets, box files, weights) at once; exit 1 if any."""
    from ..inputs import missing_inputs

    missing = missing_inputs(params)
    for problem in missing:
        typer.echo(problem, err=True)
    if missing:
        raise typer.Exit(1)
    typer.echo(f"{params}: every input is present")


@app.command("readme-results")
@exits_on_errors
def readme_results(
    command: Annotated[str, typer.Option("--command", help="how the quoted run was made (written above the numbers)")],
    report: Annotated[Path, typer.Option("--report", help="the report stage's markdown")] = Path("reports/results.md"),
    readme: Annotated[Path, typer.Option("--readme", help="README to update")] = Path("README.md"),
    section: Annotated[str, typer.Option("--section", help="a named results section (one per profile "
                                         "quoted, e.g. noisy); default: the main one")] = "",
):
    """Copy a run's reports/results.md into README.md's results section (between its markers)."""
    from ..readme_results import update_readme

    update_readme(readme, report, command, section)
    typer.echo(f"{readme}: results section {section or '(main)'} replaced from {report}")
