"""docs/config.md documents every key of every config table."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from mtrs.config.models import JobConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        inner = [ann, *typing.get_args(ann)]
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                out += _keys(t, prefix + name + ".")
    return out


def test_every_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    keys = _keys(JobConfig)
    assert len(keys) > 60
    tables = {f"[{k}]" for k in JobConfig.model_fields} | {
        "[[features]]",
        "[[tasks]]",
        "[[relations]]",
    }
    assert all(
        t in text
        for t in tables
        if t.strip("[]") not in ("features", "tasks", "relations") or t.startswith("[[")
    )
    leaves = [k for k in keys if "." in k]
    missing = [k for k in leaves if f"`{k.rsplit('.', 1)[-1]}`" not in text]
    assert not missing, f"undocumented config keys: {missing}"
