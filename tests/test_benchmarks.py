"""The benchmarks measure what they claim: the paths they time compute the same thing."""
import torch

from pipeline.benchmarks import labeling


def test_labeling_bench_paths_agree_and_report_every_target():
    torch.set_num_threads(1)
    r = labeling.run(images=2, size=32, s=2, p=2, backbone="resnet18", naive_batch=1, repeats=1)
    assert r["A"] == 9
    assert r["max_abs_diff_naive_vs_project"] < 1e-5  # naive crops and strided views agree
    for key in ("a_over_b", "b_over_c_minus_1", "naive_s", "project_s", "pure_forward_s"):
        assert r[key] == r[key] and r[key] != float("inf")  # finite numbers, not NaN
    assert 1188 <= r["b1_bytes_per_image"] <= 2048  # 3 x 198 float16 = 1188 bytes + keys/boxes share
    mean_kl, max_kl = r["kl_fp16_model"]
    assert 0 <= mean_kl <= max_kl < 1e-3
