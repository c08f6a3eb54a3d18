"""``pipeline inspect-cache``: what the teacher said, and whether the file is intact."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, exits_on_errors


@app.command("inspect-cache")
@exits_on_errors
def inspect_cache(
    path: Annotated[Path, typer.Argument(help="teacher cache, e.g. cache/teacher-labels.h5")],
    keys: Annotated[Optional[str], typer.Option("--keys", help="list the keys matching this glob, e.g. 'AFLW2000/*' or '*'")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="sample key to show")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="draw the key's views here: each crop the teacher saw and its distributions")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="manifest with the ground truth "
                                                     "(default: paths.manifest of --params)")] = None,
    params: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml"),
    verify: Annotated[bool, typer.Option("--verify", help="read every row: checksums, distributions, finite "
                                         "angles and boxes (exit 1 if the file is damaged)")] = False,
):
    """Schema, provenance, views and size of a teacher cache; one sample's views and distributions."""
    from ..config import load_params
    from ..inspect_cache import inspect_cache as describe

    if manifest is None and params.is_file():
        manifest = (load_params(params).get("paths") or {}).get("manifest")
    for line in describe(path, key, png, manifest, verify, keys):
        typer.echo(line)
