"""``pipeline export`` and ``pipeline predict``: use a trained teacher or student
(:mod:`pipeline.export`, :mod:`pipeline.predict`, :mod:`pipeline.predict_sources`).
They need the ``deploy`` extra (``pip install -e ".[deploy]"``: onnx, onnxruntime, mtcnn)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .app import app, exits_on_errors


@app.command("export")
@exits_on_errors
def export(checkpoint: Annotated[Path, typer.Argument(help="a teacher or student checkpoint (.pt)")],
           out: Annotated[Path, typer.Argument(help="the ONNX file to write")]):
    """Write a checkpoint as ONNX (dynamic batch; input size, normalisation, bins and angle convention in its metadata)."""
    from ..export import export_onnx

    meta = export_onnx(checkpoint, out)
    h, w = json.loads(meta["input_size"])
    typer.echo(f"{out}: {meta['backbone']}, image (N, 3, {h}, {w}) normalised RGB -> angles (N, 3) degrees "
               f"({meta['angle_order']})")


@app.command("predict")
@exits_on_errors
def predict(inputs: Annotated[List[str], typer.Argument(help="images, folders, video files, or a camera index (0)")],
            model: Annotated[Path, typer.Option("--model", help="checkpoint (.pt) or exported ONNX file (.onnx)")],
            out: Annotated[Path, typer.Option("--out", help="one row per face: .csv or .json")] = Path("faces.csv"),
            annotate: Annotated[Optional[Path], typer.Option("--annotate", help="write annotated images/videos here")] = None,
            matrix: Annotated[bool, typer.Option("--matrix", help="add the rotation matrix r00..r22 to each row")] = False,
            cube: Annotated[bool, typer.Option("--cube", help="annotate with a cube turned with the head instead of axes")] = False,
            detector: Annotated[str, typer.Option(help="mtcnn (pretrained, from the mtcnn wheel) or haar (OpenCV)")] = "mtcnn",
            min_score: Annotated[Optional[float], typer.Option(help="score a face needs: mtcnn's face probability, haar's neighbours; default: the relabel stage's default (relabel.mtcnn.min_score, relabel.haar.min_neighbors)")] = None,
            batch_size: Annotated[int, typer.Option(help="faces per forward pass")] = 32,
            device: Annotated[str, typer.Option(help="cpu or cuda (checkpoints; ONNX runs on onnxruntime's CPU)")] = "cpu"):
    """Head pose of every face (MTCNN or Haar detector, crops as in training) in images, folders, videos or a camera."""
    from ..predict import PoseEstimator
    from ..predict_sources import predict_sources

    estimator = PoseEstimator(model, detector=detector, device=device, batch_size=batch_size, min_score=min_score)
    summary = predict_sources(estimator, inputs, out, annotate, matrix, cube)
    typer.echo(f"{out}: {summary.line()}")
