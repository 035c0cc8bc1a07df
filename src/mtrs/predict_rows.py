"""Scoring given rows with a saved model (``mtrs predict``): the candidates of an id-less log.

A model trained on impressions without user or item ids has no catalog to rank; what it
does is score the rows it is given — e.g. the candidate impressions of a request. Each row
must carry the model's input columns; the output has one column per task (and funnel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtrs.artifact import LoadedModel, load_model
from mtrs.data.history import HistoryInput
from mtrs.data.readers import read_table
from mtrs.data.tables import add_key_standins, check_numbers
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import predict
from mtrs.outdir import atomic_path


def predictions_frame(m: LoadedModel, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """Per-task predictions for ``rows`` (in their order).

    Columns: a binary task's or funnel's probability, a regression task's value, a multiclass
    task's most probable class and ``<task>:p`` its probability.

    Raises:
        MtrsUserError: A model with behaviour histories (they need the user's log), or an
            input column the rows lack.
    """
    proc = m.processor
    if proc.histories:
        raise MtrsUserError(
            f"{m.directory}: this model reads behaviour histories, which come from each "
            "user's log; rank a user's candidates with mtrs recommend --candidates instead"
        )
    for f in m.cfg.features:
        if f.source_column not in rows.columns:
            raise MtrsUserError(
                f"{source}: feature '{f.name}' needs column '{f.source_column}', not found"
            )
    for f in m.cfg.features:
        if f.kind == "numeric":
            check_numbers(rows[f.source_column], source, f"numeric feature '{f.name}'")
    frame = add_key_standins(rows.copy(), m.cfg.data)
    batch = proc.encode(frame, HistoryInput.empty(proc.histories, len(frame)))
    preds = predict(m.model, batch, m.tasks, m.cfg.train.eval_batch_size)
    out = pd.DataFrame(index=rows.index)
    for name, p in preds.items():
        classes = m.tasks[name].encoding.classes if name in m.tasks.names else None
        if classes is not None:
            out[name] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
            out[f"{name}:p"] = p.max(axis=1)
        else:
            out[name] = p
    return out


def predict_file(
    model_dir: str | Path, rows_path: str | Path, out: str | Path, keep: list[str]
) -> pd.DataFrame:
    """Score the rows of a CSV or Parquet file and write the predictions atomically.

    Args:
        model_dir: A model directory from ``mtrs train``.
        rows_path: The rows to score.
        out: The output file (``.csv`` or ``.parquet``); never the input file.
        keep: Input columns copied in front of the predictions (e.g. an impression id).

    Raises:
        MtrsUserError: Bad paths, columns or formats.
    """
    rows_path, out = Path(rows_path), Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise MtrsUserError(f"--out: '{out}' must end in .csv or .parquet")
    if out.exists() and out.resolve() == rows_path.resolve():
        raise MtrsUserError(f"--out: '{out}' is the input file; choose another path")
    if not out.parent.is_dir():
        raise MtrsUserError(f"--out: directory '{out.parent}' does not exist")
    m = load_model(model_dir)
    rows = read_table(rows_path)
    missing = [c for c in keep if c not in rows.columns]
    if missing:
        raise MtrsUserError(f"--keep: column '{missing[0]}' is not in {rows_path}")
    result = pd.concat(
        [rows[keep].reset_index(drop=True), predictions_frame(m, rows, str(rows_path))], axis=1
    )
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            result.to_csv(tmp, index=False)
        else:
            result.to_parquet(tmp, index=False)
    return result
