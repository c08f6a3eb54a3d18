"""``pipeline bench predict``: a student (or teacher) checkpoint in PyTorch against its ONNX
export in onnxruntime, on this CPU, batch 1 and 32, same threads and crops: images/s and the
latency of one batch, medians of interleaved repeats. Detection is left out (the same for both)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..export import export_onnx
from ..predict import load_network


def run(checkpoint: Path, batch_sizes: Sequence[int] = (1, 32), repeats: int = 5, batches: int = 20,
        threads: int = 0) -> dict:
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(checkpoint, onnx_path)
        nets = {"pytorch": load_network(checkpoint), "onnxruntime": load_network(onnx_path, threads=threads)}
        size = nets["pytorch"].input_size
        rng = np.random.default_rng(0)
        inputs = {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in batch_sizes}
        agree = float(np.abs(nets["pytorch"](inputs[max(batch_sizes)]) - nets["onnxruntime"](inputs[max(batch_sizes)])).max())
        latency = {(name, b): [] for name in nets for b in batch_sizes}
        for net in nets.values():                       # warm-up
            for x in inputs.values():
                net(x)
        for _ in range(repeats):                        # interleaved
            for (name, b) in latency:
                start = time.perf_counter()
                for _ in range(batches):
                    nets[name](inputs[b])
                latency[(name, b)].append((time.perf_counter() - start) / batches)
    rows = {f"{name} batch {b}": {"latency_ms": 1e3 * statistics.median(t), "images_per_s": b / statistics.median(t)}
            for (name, b), t in latency.items()}
    return {"checkpoint": str(checkpoint), "input_size": size, "threads": threads, "repeats": repeats,
            "batches": batches, "rows": rows, "max_angle_difference": agree}


def report(r: dict) -> str:
    lines = [f"{r['checkpoint']} at {r['input_size']} px, cpu, fp32, {r['threads']} threads; medians of "
             f"{r['repeats']} interleaved runs of {r['batches']} batches (crops ready, no detection)"]
    lines += [f"  {name:<24} {v['latency_ms']:8.2f} ms/batch {v['images_per_s']:8.1f} images/s"
              for name, v in r["rows"].items()]
    for b in sorted({int(k.rsplit(' ', 1)[1]) for k in r["rows"]}):
        ratio = r["rows"][f"onnxruntime batch {b}"]["images_per_s"] / r["rows"][f"pytorch batch {b}"]["images_per_s"]
        lines.append(f"  batch {b}: onnxruntime / pytorch = {ratio:.2f}x")
    lines.append(f"  largest angle difference between the two: {r['max_angle_difference']:.1e} degrees")
    return "\n".join(lines)
