"""The quickstart job on synthetic data: the tables with a ready config, and the oracle.

The generator knows the true click and purchase probabilities of every impression, so the
best AUC any model can reach on the same rows — the oracle — is known exactly.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from mtrs.data.split import TEST
from mtrs.datasets import synth
from mtrs.eval.metrics import auc
from mtrs.job import Job
from mtrs.outdir import write_text


def quickstart_config_text(fmt: str = "csv") -> str:
    """The packaged quickstart config, pointing at tables with the given suffix."""
    text = resources.files("mtrs").joinpath("configs/quickstart.toml").read_text("utf-8")
    return text.replace(".csv", f".{fmt}")


def write_synth(out: Path, spec: synth.SynthSpec, fmt: str = "csv") -> Path:
    """Write the synthetic tables, truth and a ready config ``mtrs.toml``; returns the config."""
    synth.write(synth.generate(spec), out, fmt=fmt)  # type: ignore[arg-type]
    config = out / "mtrs.toml"
    write_text(config, quickstart_config_text(fmt))
    return config


def oracle_metrics(job: Job, truth: pd.DataFrame) -> dict[str, dict[str, float]]:
    """AUC of the true probabilities on a job's test rows: the best any model can reach.

    Args:
        job: A job trained on the synthetic log (in memory).
        truth: The generator's ``truth`` table (``p_click``, ``p_purchase`` per event).

    Returns:
        ``{"click", "purchase" (given click), "click_purchase"}`` → ``{"auc": value}``.
    """
    memory = job.prepared.in_memory()
    rows = memory.frame[memory.split == TEST]
    t = truth.set_index("event_id").loc[rows["event_id"].to_numpy()]
    click = rows["click"].to_numpy()
    bought = rows["purchase"].to_numpy()
    clicked = click == 1
    return {
        "click": {"auc": auc(click, t["p_click"].to_numpy())},
        "purchase": {"auc": auc(bought[clicked], t["p_purchase"].to_numpy()[clicked])},
        "click_purchase": {"auc": auc(bought, (t["p_click"] * t["p_purchase"]).to_numpy())},
    }
