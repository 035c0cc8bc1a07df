"""Re-scoring a saved model on its test split (``mtrs evaluate``), in memory or streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtrs.artifact import load_model, write_manifest
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import evaluate
from mtrs.jsonio import write_json
from mtrs.outdir import rewrite
from mtrs.prepare import read_test_rows


def rescore(model_dir: str | Path) -> dict[str, Any]:
    """Score a model directory on the test rows of its config and rewrite its metrics.

    The rows are re-read with the saved processor (a streamed log in chunks, never whole);
    ``metrics.json`` gets the new test metrics and ``manifest.json`` the new checksum, written
    into a copy of the directory that is then swapped in (:func:`mtrs.outdir.rewrite`), so a
    reader or a crash never sees one file new and the other old.

    Returns:
        The new ``metrics.json`` document.

    Raises:
        MtrsUserError: Not a model directory, bad data, or a split without test rows.
    """
    directory = Path(model_dir)
    m = load_model(directory)
    test = read_test_rows(m.cfg, m.processor)
    if test is None or len(test) == 0:
        raise MtrsUserError(f"{directory}: the config's split leaves no test rows to evaluate")
    doc = dict(m.metrics)
    doc["tasks"] = evaluate(m.model, test, m.tasks, m.cfg.train.eval_batch_size)
    with rewrite(directory) as tmp:
        write_json(tmp / "metrics.json", doc)
        write_manifest(tmp)
    return doc
