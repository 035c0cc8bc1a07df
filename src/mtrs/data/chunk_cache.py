"""Encoded training chunks kept on disk, so that streamed epochs do not re-encode the log."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from mtrs.data.batch import Batch
from mtrs.errors import MtrsUserError


def _own(t: Tensor) -> Tensor:
    """``t`` alone in its storage (safetensors refuses tensors that share one, e.g. views)."""
    if t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone()


class ChunkCache:
    """The training rows of each chunk of a streamed log, encoded, one safetensors file each.

    The preparation pass already encodes every chunk (for the evaluation rows and the
    catalog); writing the training rows out there lets every epoch read them back instead of
    reading and encoding the log again — the same encoded rows an in-memory log keeps in RAM,
    kept on disk. Encoding is deterministic (the out-of-vocabulary drop of training happens in
    the embedding), so training on the cache is training on the log.

    The files live in a fresh temporary directory (under ``TMPDIR``), removed by
    :meth:`close` or when the cache is garbage-collected, whichever is first.

    Args:
        parent: Where to make the temporary directory (default: the system's).
    """

    def __init__(self, parent: str | Path | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mtrs-chunks-", dir=parent))
        self._positions: list[int] = []
        self.complete = False
        self.nbytes = 0
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)

    def _path(self, position: int) -> Path:
        return self.directory / f"chunk-{position:06d}.safetensors"

    def write(self, position: int, batch: Batch) -> None:
        """Keep the rows of chunk ``position`` (chunks are written in log order)."""
        if self.complete:
            raise RuntimeError("the chunk cache is complete; it is not written twice")
        if self._positions and position <= self._positions[-1]:
            raise ValueError(f"chunk {position} written after chunk {self._positions[-1]}")
        path = self._path(position)
        try:
            save_file({k: _own(t) for k, t in batch.to_tensors().items()}, str(path))
        except OSError as err:  # a full disk, most often: the job stops with one line
            self.close()
            raise MtrsUserError(
                f"data.cache_chunks: cannot write the encoded training rows to "
                f"{self.directory} ({err.strerror or err}); free space there (or point TMPDIR "
                "elsewhere), or set data.cache_chunks = false to re-encode the log each epoch"
            ) from None
        self.nbytes += path.stat().st_size
        self._positions.append(position)

    def finish(self) -> None:
        """Every chunk is written: from now on the cache can stand for the log."""
        self.complete = True

    def batches(self, keep: Callable[[int], bool] | None = None) -> Iterator[Batch]:
        """The kept chunks' rows in log order (only the chunk positions ``keep`` accepts)."""
        if not self.complete:
            raise RuntimeError("the chunk cache is not complete")
        for position in self._positions:
            if keep is None or keep(position):
                yield Batch.from_tensors(load_file(str(self._path(position))))

    def close(self) -> None:
        """Delete the files."""
        self._cleanup()


__all__ = ["ChunkCache"]
