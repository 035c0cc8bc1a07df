"""``mtrs export MODEL_DIR --format onnx --out DIR``: a model directory as ONNX graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtrs.cli.output import console, print_json
from mtrs.errors import MtrsUserError

FORMATS = ("onnx",)


def export(
    model_dir: Annotated[Path, typer.Argument(help="The trained model directory.")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write (new, empty or a previous export).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON.")] = False,
) -> None:
    """Export a model for serving: ONNX graphs (dynamic batch) and an onnx.json sidecar."""
    if fmt not in FORMATS:
        raise MtrsUserError(f"--format: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    # Torch and onnx are imported only here: `mtrs --help` stays fast.
    from mtrs.export.onnx import export_onnx, require_onnx

    require_onnx()
    doc = export_onnx(model_dir, out, opset)
    if as_json:
        print_json(doc)
        return
    for g in doc["graphs"].values():
        names = ", ".join(o["name"] for o in g["outputs"])
        console.print(
            f"{out / g['file']}: {len(g['inputs'])} inputs, outputs {names} "
            f"(max |onnxruntime − torch| {g['check']['max_abs_diff']:.2g})",
            markup=False,
        )
    console.print(f"sidecar: {out / 'onnx.json'}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``mtrs export`` to the main app."""
    app.command()(export)
