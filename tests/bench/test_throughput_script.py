"""The throughput benchmark's FLOP count and one small run of its mtrs worker, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _workload import Workload, mmoe_flops  # noqa: E402


def test_mmoe_flops_match_the_hand_count() -> None:
    # d = 16·16 + 63 = 319; experts 8·(319·256 + 256·128)·2; gates 2·319·8·2; mix 2·8·128·2;
    # towers 2·128·64·2; heads 2·64·2.
    f = mmoe_flops(Workload())
    assert (f.experts, f.gates, f.mixing, f.towers, f.heads) == (
        1_830_912,
        10_208,
        4_096,
        32_768,
        256,
    )
    assert f.forward == 1_878_240 and f.train == 5_634_720
    bottom = mmoe_flops(Workload(), num_experts=1, gated=False)
    assert bottom.experts == 2 * (319 * 256 + 256 * 128) and bottom.gates == 0


def test_throughput_script_measures_an_mtrs_epoch(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    cmd = [sys.executable, str(BENCH / "throughput.py"), "--rows", "8192", "--systems", "mtrs"]
    cmd += ["--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    m = doc["systems"]["mtrs"]
    assert m["precision"] == "fp32" and m["threads"] == 1
    assert m["train_samples_per_s"] > 0 and m["predict_samples_per_s"] > 0
    assert m["train_flops_per_sample"] == 5_634_720
    # achieved = FLOPs/sample × samples/s, and the bound is that over the measured matmul rate
    assert m["achieved_gflops"] == pytest.approx(5_634_720 * m["train_samples_per_s"] / 1e9)
    assert m["compute_bound_fraction"] == pytest.approx(
        m["achieved_gflops"] / m["matmul_gflops"], rel=1e-6
    )
    assert all(a > 0.5 for a in m["auc"])  # it learned something in one epoch
    # Without the peers the ratios are unknown, not met or missed.
    assert doc["goals"]["train_vs_deepctr"]["met"] is None
    assert doc["goals"]["compute_bound_fraction"]["met"] is not None
