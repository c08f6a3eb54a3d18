"""``pipeline synth``: the embedded synthetic dataset, from the ``synth`` params block."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .app import app, exits_on_errors


@app.command("synth")
@exits_on_errors
def synth(
    params: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml"),
    set_: Annotated[List[str], typer.Option("--set", help="override a param: synth.key=value")] = [],
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default: synth.out_dir)")] = None,
):
    """Render the synthetic 300W-LP / AFLW2000 / BIWI look-alikes with exact pose labels."""
    import dataclasses

    from ..config import stage_config
    from ..synth.build import SynthConfig, generate

    cfg = stage_config("synth", SynthConfig, params, set_)
    if out is not None:
        cfg = dataclasses.replace(cfg, out_dir=out)
    typer.echo(json.dumps(generate(cfg), indent=1))
