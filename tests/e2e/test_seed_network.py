"""The design's Keras network, as an mtrs config, has exactly the Keras parameter count."""

from __future__ import annotations

from pathlib import Path

from mtrs.config.load import load_config
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.job import build
from mtrs.model import count_parameters
from mtrs.prepare import prepare

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "seed_keras_equivalent.toml"


def test_seed_keras_equivalent_parameter_count(tmp_path: Path) -> None:
    write(generate(SynthSpec(num_users=100, num_items=40, num_events=3000)), tmp_path)
    cfg = load_config(CONFIG)
    cfg.data.interactions = str(tmp_path / "interactions.csv")
    cfg.data.users = str(tmp_path / "users.csv")
    cfg.data.items = str(tmp_path / "items.csv")
    model, tasks = build(cfg, prepare(cfg))
    d = len(cfg.features)  # every feature is one numeric column
    k = cfg.model.shared.hidden[0]
    m = {t.name: cfg.model.tower.hidden[0] for t in cfg.tasks}
    l_out = {t.name: 1 for t in cfg.tasks}
    expected = d * k + k + sum(k * m[t] + m[t] + m[t] * l_out[t] + l_out[t] for t in m)
    assert expected == 4482  # the number quoted in the config's header
    assert count_parameters(model) == expected
    assert [t.name for t in tasks] == ["click", "purchase"]
