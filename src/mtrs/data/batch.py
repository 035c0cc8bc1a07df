"""The one typed batch object: feature tensors, labels and label masks."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """Rows of encoded features and labels; a whole split is a ``Batch`` too.

    Shape:
        - ``cat``: [B, F_cat] int64 codes of categorical features (0 pad, 1 OOV).
        - ``num``: [B, F_num] float32 standardised numeric features.
        - ``multi[name]``: [B, L] int64 token codes of a multi-hot feature (0 = padding).
        - ``hist[name]``: [B, N] int64 item codes of a behaviour history (0 = padding),
          oldest first; ``hist_value[name]``, ``hist_gap[name]``: [B, N] float32 side values.
        - ``labels``: [B, T] float32, one column per task in config order (class index for
          multiclass); ``mask``: [B, T] bool, True where the task's label counts.
        - ``user``: [B] int64 user index (for gAUC and per-user evaluation).
    """

    cat: Tensor
    num: Tensor
    labels: Tensor
    mask: Tensor
    user: Tensor
    multi: dict[str, Tensor] = field(default_factory=dict)
    hist: dict[str, Tensor] = field(default_factory=dict)
    hist_value: dict[str, Tensor] = field(default_factory=dict)
    hist_gap: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def _map(self, fn: object) -> Batch:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                out[f.name] = {k: fn(t) for k, t in v.items()}  # type: ignore[operator]
            else:
                out[f.name] = fn(v)  # type: ignore[operator]
        return replace(self, **out)  # type: ignore[arg-type]

    def take(self, index: Tensor | slice) -> Batch:
        """The rows at ``index`` (a 1-D int64 tensor or a slice)."""
        return self._map(lambda t: t[index])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (for faster host-to-GPU copies)."""
        return self._map(lambda t: t.pin_memory())

    def to_tensors(self) -> dict[str, Tensor]:
        """The batch as flat named tensors (``cat``, ``hist/<name>`` …), e.g. for safetensors."""
        out: dict[str, Tensor] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                out.update({f"{f.name}/{k}": t.contiguous() for k, t in v.items()})
            else:
                out[f.name] = v.contiguous()
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> Batch:
        """The batch that :meth:`to_tensors` flattened."""
        groups: dict[str, dict[str, Tensor]] = {
            "multi": {},
            "hist": {},
            "hist_value": {},
            "hist_gap": {},
        }
        plain: dict[str, Tensor] = {}
        for key, t in tensors.items():
            group, sep, name = key.partition("/")
            if sep:
                groups[group][name] = t
            else:
                plain[key] = t
        return Batch(
            cat=plain["cat"],
            num=plain["num"],
            labels=plain["labels"],
            mask=plain["mask"],
            user=plain["user"],
            **groups,
        )

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        """Rows of several batches stacked in order."""
        first = parts[0]
        out: dict[str, object] = {}
        for f in fields(first):
            v = getattr(first, f.name)
            if isinstance(v, dict):
                out[f.name] = {k: torch.cat([getattr(p, f.name)[k] for p in parts]) for k in v}
            else:
                out[f.name] = torch.cat([getattr(p, f.name) for p in parts])
        return Batch(**out)  # type: ignore[arg-type]
