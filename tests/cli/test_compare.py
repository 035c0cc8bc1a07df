"""``mtrs compare``: same split and budget for each architecture, λ sweep, skipped ESMM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec


def test_compare_two_architectures_two_lambdas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_synth(tmp_path / "data", SynthSpec(num_users=150, num_items=40, num_events=5000))
    # A config without the funnel: ESMM must be skipped with its reason, not crash.
    text = config.read_text()
    text = text[: text.index("[[relations]]")] + text[text.index("[model]") :]
    config.write_text(text.replace("epochs = 4", "epochs = 1"))
    out = tmp_path / "cmp"
    code = run(
        [
            "compare",
            str(config),
            "--architectures",
            "shared_bottom,mmoe,esmm",
            "--seeds",
            "1",
            "--lambdas",
            "0,0.3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Skipped `esmm`" in printed
    doc = json.loads((out / "compare.json").read_text())
    assert set(doc["summary"]) == {
        "shared_bottom λ=0",
        "shared_bottom λ=0.3",
        "mmoe λ=0",
        "mmoe λ=0.3",
    }
    assert "esmm" in doc["skipped"]
    runs = doc["runs"]
    assert len(runs) == 4
    assert {r["lambda_shared"] for r in runs} == {0.0, 0.3}
    mmoe = next(r for r in runs if r["architecture"] == "mmoe")
    for weights in mmoe["gates"].values():
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    for r in runs:
        assert 0.4 < r["metrics"]["click"]["auc"] < 1.0
        assert len(r["grad_cosine"]) == 1 and all(
            -1.0 <= v <= 1.0 for v in r["grad_cosine"][0].values()
        )
    assert (out / "compare.md").read_text().count("|") > 10
    html = (out / "report.html").read_text()
    assert "Mean gate weight" in html and "Sweeping λ" in html and "gradients" in html


def test_compare_rejects_bad_lambda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_synth(tmp_path / "data", SynthSpec(num_users=50, num_items=20, num_events=800))
    assert run(["compare", str(config), "--lambdas", "0,2", "--out", str(tmp_path / "o")]) == 2
    assert "--lambdas" in capsys.readouterr().err
    assert (
        run(["compare", str(config), "--architectures", "mmoe,nope", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
