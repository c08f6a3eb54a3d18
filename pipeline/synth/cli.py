"""``pipeline synth``: generate the embedded synthetic dataset from the ``synth`` params block."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer

from ..cli import app
from ..config import ConfigError, stage_config
from .build import SynthConfig, generate


def load_config(params: Path, overrides: List[str], out: Optional[Path] = None) -> SynthConfig:
    cfg = stage_config("synth", SynthConfig, params, overrides)
    return dataclasses.replace(cfg, out_dir=out) if out is not None else cfg


@app.command("synth")
def synth(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params file"),
    set_: List[str] = typer.Option([], "--set", help="override a param: synth.key=value"),
    out: Optional[Path] = typer.Option(None, "--out", help="output folder (default: synth.out_dir)"),
):
    """Render the synthetic 300W-LP / AFLW2000 / BIWI look-alikes with exact pose labels."""
    try:
        cfg = load_config(params, set_, out)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(generate(cfg), indent=1))
