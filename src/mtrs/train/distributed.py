"""Data-parallel training over ``torch.distributed``: one model, several processes (torchrun).

Every process (rank) holds a full copy of the model and trains on its own share of each
global mini-batch; after every backward pass the gradients are averaged over the ranks, so
every rank takes the same optimizer step and the copies stay identical. Each rank first
scales every loss term by its share of the rows that term averages over (a conditional
task's labelled rows differ between the ranks; :meth:`Distributed.begin_step`), so that the
average is the gradient of the global mini-batch's loss, also when the shares are uneven or
a rank has no rows left in a streamed epoch (it then runs a one-row stand-in batch with
share 0, so that every rank calls the same collectives in the same order).

Gradients are averaged explicitly, one flattened all-reduce per step, rather than by the
``DistributedDataParallel`` module's autograd hooks: GradNorm and PCGrad compute per-task
gradients with ``torch.autograd.grad`` and write ``.grad`` themselves, which those hooks do
not see. The weighting methods average their per-task gradients and losses across ranks
through :meth:`Distributed.mean` (PCGrad projects the global batch's task gradients, GradNorm
balances the global batch's gradient norms), so every method behaves as on one process with
the global batch.

Backends: ``gloo`` on CPU, ``nccl`` when training on CUDA. The process group is set up from
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, …).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtrs.errors import MtrsUserError


def _init_group(backend: str, world: int) -> None:
    """Join torchrun's process group, with keys of this attempt's own in the agent's store.

    torchrun's agent keeps one TCP store across ``--max-restarts`` attempts, and a failed
    attempt's keys (e.g. the killed rank 0's gloo address) stay in it, so a restarted
    attempt could read them and fail to connect (PyTorch issue #135712). Prefixing the keys
    with the restart count (the same on every worker of a single-node job, whose workers all
    restart together) keeps the attempts apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend)
        return
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=False,
        timeout=timedelta(minutes=30),
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"mtrs/attempt-{attempt}", client)
    dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]), world_size=world)


def world_size_from_env() -> int:
    """Processes of this job as torchrun announces them (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Distributed:
    """This process's place in a data-parallel job, and the collectives training needs.

    Args:
        rank: This process's rank (0 … world − 1).
        world: Number of processes.
        device: The device this rank trains on (``cuda:LOCAL_RANK`` with NCCL).
    """

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device
        # Per loss term (and "rows"), this rank's scale in the current step (begin_step).
        self.shares: dict[str, float] = {}

    @classmethod
    def from_env(cls, device: str = "auto") -> Distributed | None:
        """Join the process group torchrun described (None when not under torchrun).

        Args:
            device: ``train.device``: ``auto`` or ``cuda*`` use NCCL when CUDA is present,
                otherwise gloo on CPU.

        Raises:
            MtrsUserError: ``train.device`` asks for CUDA on a machine without it.
        """
        world = world_size_from_env()
        if world <= 1:
            return None
        local = int(os.environ.get("LOCAL_RANK", "0"))
        wants_cuda = (device == "auto" and torch.cuda.is_available()) or device.startswith("cuda")
        if wants_cuda and not torch.cuda.is_available():
            raise MtrsUserError(f"train.device = '{device}': CUDA is not available here")
        if wants_cuda:
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        else:
            dev = torch.device("cpu")
        if not dist.is_initialized():
            _init_group("nccl" if wants_cuda else "gloo", world)
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        dist.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ data

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (shares differ by at most one row)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def local_batch_size(self, global_batch: int) -> int:
        """Rows per rank and step for a global mini-batch of ``global_batch`` rows."""
        return max(1, -(-global_batch // self.world))

    # ------------------------------------------------------------------ per step

    def set_shares(self, local: dict[str, float], total: dict[str, float]) -> None:
        """Set :attr:`shares` from this rank's and all ranks' counts of the coming step.

        Per loss term (and ``"rows"``): ``world · m_r / M`` (``m_r`` this rank's rows of the
        term, ``M`` all ranks'). A rank that multiplies its loss terms by these shares and
        then averages the gradients over the ranks follows the gradient of the global
        batch's masked means exactly.
        """
        self.shares = {k: (self.world * local[k] / total[k] if total[k] else 0.0) for k in local}

    def begin_step(self, counts: dict[str, float]) -> int:
        """:meth:`set_shares` when only this rank's counts are known (one all-reduce).

        Args:
            counts: This rank's rows per loss term and in all (``"rows"``).

        Returns:
            The rows of all ranks (0: no rank has any; a streamed epoch is over).
        """
        keys = sorted(counts)
        t = torch.tensor([counts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        total = dict(zip(keys, t.tolist(), strict=True))
        self.set_shares(counts, total)
        return int(total["rows"])

    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over the ranks (the same value on every rank)."""
        out = t.detach().clone().contiguous()
        dist.all_reduce(out)
        return out / self.world

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every ``p.grad`` by its mean over the ranks (one all-reduce).

        A parameter no rank produced a gradient for keeps ``grad = None`` (the optimizer then
        leaves it untouched, as on one process).
        """
        if not params:
            return
        parts = [
            p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params
        ]
        flags = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        flat = torch.cat([*parts, flags.to(parts[0].dtype)])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        got = flat[-len(params) :]
        for i, p in enumerate(params):
            n = p.numel()
            if got[i] > 0:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dictionary of floats over the ranks (keys sorted; every rank has the same)."""
        keys = sorted(values)
        if not keys:
            return {}
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist(), strict=True))

    # ------------------------------------------------------------------ gathering

    def gather_rows(self, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Concatenate every rank's rows (in rank order) of each array, on every rank."""
        out: dict[str, np.ndarray] = {}
        for name in sorted(parts):
            local = torch.from_numpy(np.ascontiguousarray(parts[name])).to(self.device)
            sizes = [torch.zeros(1, dtype=torch.int64, device=self.device)
                     for _ in range(self.world)]  # fmt: skip
            dist.all_gather(sizes, torch.tensor([len(local)], device=self.device))
            most = int(max(int(s.item()) for s in sizes))
            padded = local.new_zeros((most, *local.shape[1:]))
            padded[: len(local)] = local
            got = [torch.zeros_like(padded) for _ in range(self.world)]
            dist.all_gather(got, padded)
            rows = [g[: int(s.item())] for g, s in zip(got, sizes, strict=True)]
            out[name] = torch.cat(rows).cpu().numpy()
        return out

    def broadcast_json(self, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Rank 0 computes a JSON document; every rank returns it (sent as UTF-8 bytes)."""
        data = json.dumps(make()).encode("utf-8") if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, 0)
        buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.is_main:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buf, 0)
        return dict(json.loads(bytes(buf.cpu().numpy()).decode("utf-8")))

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, 0)
