"""``pipeline bench all``: every benchmark in one run, one table of the ratios the issues target.

Needs the embedded pipeline's outputs (``dvc repro``): the train and distill benchmarks read
the manifest, the teacher checkpoint and the cache named in the params file.
"""
from __future__ import annotations

from pathlib import Path

from . import distill as distill_bench
from . import labeling as labeling_bench
from . import train as train_bench

KL_TARGET = 1e-6


def rows(params: Path, steps: int) -> list[tuple[str, float, str, bool]]:
    """(measure, value, target, met) for every target of the issues."""
    train = train_bench.run(params=params, steps=steps)  # the config's loader, and workers=0
    train_rows = [(f"train: data wait / step time ({name})", t["data_wait_share"], "< 0.10",
                   t["data_wait_share"] < 0.10) for name, t in sorted(train["runs"].items())]
    lab = labeling_bench.run(params=params)
    fast = "bf16" if "bf16 d_job" in lab["timing"] else "fp32"   # what the job runs with precision auto
    job, forward = (lab["timing"][f"{fast} {k}"]["median"] for k in ("d_job", "c_forward"))
    crops, views = (lab["timing"][f"{fast} {k}"]["median"] for k in ("a_crops", "b_views"))
    cache = lab["cache"]
    b1 = cache["files"]["b1 gzip"]
    dist = distill_bench.run(params=params, steps=steps, online_sp=(2, 6))  # A = 49 at 64 px
    return train_rows + [
        (f"labeling ({fast}): job / bare forward - 1", job / forward - 1, "<= 0.10", job / forward - 1 <= 0.10),
        (f"labeling ({fast}): crops / strided views (same batches)", crops / views, "report", True),
        ("cache: bytes per image a student reads (b1, gzip)", b1["bytes_per_image"], "<= 1024",
         b1["bytes_per_image"] <= 1024),
        ("cache: random-row read, gzip / uncompressed", b1["read_s"]["median"]
         / cache["files"]["b1 uncompressed"]["read_s"]["median"], "<= 1.10",
         b1["read_s"]["median"] <= 1.10 * cache["files"]["b1 uncompressed"]["read_s"]["median"]),
        ("cache: KL(fp32 || stored) mean, teacher outputs", cache["kl_mean"], "<= 1e-6", cache["kl_mean"] <= KL_TARGET),
        ("distill: cache / hard labels (a/b, median)", dist["a_over_b"], ">= 0.95", dist["a_over_b"] >= 0.95),
        (f"distill: cache / online ensemble A={dist['A']} (a/c, median)", dist["a_over_c"], ">= 10",
         dist["a_over_c"] >= 10),
    ]


def report(table: list[tuple[str, float, str, bool]]) -> str:
    width = max(len(name) for name, *_ in table)
    lines = [f"{'measure':<{width}}  {'value':>10}  {'target':>8}  met"]
    lines += [f"{name:<{width}}  {value:>10.4g}  {target:>8}  {'yes' if met else 'NO'}"
              for name, value, target, met in table]
    return "\n".join(lines)
