"""``pipeline bench all``: every benchmark in one run, one table of the ratios the issues target.

Needs the embedded pipeline's outputs (``dvc repro``): the train and distill benchmarks read
the manifest, the teacher checkpoint and the cache named in the params file.
"""
from __future__ import annotations

from pathlib import Path

from . import distill as distill_bench
from . import labeling as labeling_bench
from . import train as train_bench

KL_TARGET = 1e-4


def rows(params: Path, steps: int) -> list[tuple[str, float, str, bool]]:
    """(measure, value, target, met) for every target of the issues."""
    train = train_bench.run(params=params, steps=steps)  # the config's loader, and workers=0
    train_rows = [(f"train: data wait / step time ({name})", t["data_wait_share"], "< 0.10",
                   t["data_wait_share"] < 0.10) for name, t in sorted(train["runs"].items())]
    lab = labeling_bench.run(images=8, size=64, s=5, p=10, naive_batch=1)
    # the naive path again with an image's A windows per forward: on a CPU the forward pass,
    # not the cropping, dominates, and this is the ratio that shows it
    lab_batched = labeling_bench.run(images=8, size=64, s=5, p=10, naive_batch=0)
    kl_mean, _ = lab["kl_fp16_model"]
    kl_peaked, _ = lab["kl_fp16_peaked_sigma2"]
    dist = distill_bench.run(params=params, steps=steps, online_sp=(2, 6))  # A = 49 at 64 px
    return train_rows + [
        ("labeling: naive / project (a/b)", lab["a_over_b"], ">= 5", lab["a_over_b"] >= 5),
        ("labeling: naive, A windows per forward / project", lab_batched["a_over_b"], ">= 5",
         lab_batched["a_over_b"] >= 5),
        ("labeling: project / pure forward - 1 (b/c-1)", lab["b_over_c_minus_1"], "<= 0.10",
         lab["b_over_c_minus_1"] <= 0.10),
        ("cache: b1 bytes per image", lab["b1_bytes_per_image"], "<= 2048", lab["b1_bytes_per_image"] <= 2048),
        ("cache: KL(fp32 || fp16) mean, model output", kl_mean, "<= 1e-4", kl_mean <= KL_TARGET),
        ("cache: KL(fp32 || fp16) mean, sigma=2 deg peaks", kl_peaked, "<= 1e-4", kl_peaked <= KL_TARGET),
        ("distill: cache / hard labels (a/b)", dist["a_over_b"], ">= 0.95", dist["a_over_b"] >= 0.95),
        (f"distill: cache / online ensemble A={dist['A']} (a/c)", dist["a_over_c"], ">= 10",
         dist["a_over_c"] >= 10),
    ]


def report(table: list[tuple[str, float, str, bool]]) -> str:
    width = max(len(name) for name, *_ in table)
    lines = [f"{'measure':<{width}}  {'value':>10}  {'target':>8}  met"]
    lines += [f"{name:<{width}}  {value:>10.4g}  {target:>8}  {'yes' if met else 'NO'}"
              for name, value, target, met in table]
    return "\n".join(lines)
