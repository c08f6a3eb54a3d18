"""The benchmarks measure what they claim: the paths they time compute the same thing."""
import torch
import yaml

from pipeline.benchmarks import labeling
from pipeline.ensemble import AUTOCAST_PROB_TOL
from fixtures_project import noise_samples, write_project


def test_labeling_bench_times_every_variant_on_the_project_teacher(tmp_path):
    torch.set_num_threads(1)
    samples = noise_samples(tmp_path, 5, 0, pose_limit=60)
    write_project(tmp_path, samples, 16)
    block = {"s": 2, "p": 2, "manifest": str(tmp_path / "manifest.csv"), "checkpoint": str(tmp_path / "teacher.pt"),
             "out": str(tmp_path / "cache.h5"), "batch_size": 2, "chunk_size": 2, "num_workers": 0,
             "max_windows": 18}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble_labels": block}))
    r = labeling.run(tmp_path / "params.yaml", images=4, repeats=1)
    assert r["A"] == 9 and r["images"] == 4 and r["windows_per_forward"] == 18
    assert r["max_abs_diff_crops_vs_views"] < 1e-5     # shifted crops and strided views agree
    for prec in r["precisions"]:
        # the job runs bf16 only where the teacher passes its check, as precision auto would
        job = prec == "fp32" or r["bf16_max_prob_change"] <= AUTOCAST_PROB_TOL
        assert (f"{prec} d_job" in r["timing"]) == job
        for name in ("a_crops", "b_views", "c_forward") + (("d_job",) if job else ()):
            t = r["timing"][f"{prec} {name}"]
            assert 0 < t["min"] <= t["median"] <= t["max"] < float("inf")
    files = r["cache"]["files"]
    assert files["b1 gzip"]["bytes_per_image"] < files["b1 uncompressed"]["bytes_per_image"] \
        < files["all heads gzip"]["bytes_per_image"]
    assert 1188 + 28 <= files["b1 uncompressed"]["bytes_per_image"] <= 1300   # 3 x 198 float16 + key, box, angles
    assert all(files[name]["read_s"]["median"] > 0 for name in ("b1 gzip", "b1 uncompressed"))
    assert 0 <= r["cache"]["kl_mean"] <= r["cache"]["kl_max"] < 1e-5
    assert "job / forward - 1" in labeling.report(r)


def test_labeling_bench_needs_the_trained_teacher(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble_labels": {
        "manifest": str(tmp_path / "m.csv"), "checkpoint": str(tmp_path / "gone.pt"), "out": str(tmp_path / "c.h5")}}))
    import pytest
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError, match="gone.pt: no teacher checkpoint; run `dvc repro` first"):
        labeling.run(tmp_path / "params.yaml")
