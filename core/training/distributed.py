"""The Accelerate seam: what training shares across processes, and why.

In one process (the default) :class:`Processes` does nothing: the trainer runs its plain loop.
Under ``accelerate launch`` (or torchrun, or with an ``accelerator=`` given to ``fit``) it holds a
Hugging Face ``Accelerator`` and training is data-parallel:

- every process draws the same global batch (same seed) and trains on its own contiguous slice
  of it (:meth:`Processes.local_rows`), so a run with the same seed and global batch follows a
  single process's loss curve;
- gradients are averaged by DDP (through ``accelerator.prepare``); mixed precision, gradient
  accumulation and the device are Accelerate's settings;
- the sample-sample loss needs every in-batch neighbour, so the query vectors and cluster ids
  are gathered (:meth:`Processes.gather_for_contrast`);
- frozen-encoder encoding, where the time goes on large logs, is split across processes and
  gathered (:meth:`Processes.encode`);
- only the main process logs, shows progress, validates and saves.

``accelerate`` is imported only when it is used: ``pip install 'routerdc[distributed]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..routing.router import Router
    from .trainer import EncodingCache

logger = logging.getLogger(__name__)

T = TypeVar("T")


def launched() -> bool:
    """Whether a distributed launcher started this process.

    ``WORLD_SIZE > 1`` (torchrun, ``accelerate launch`` with several processes) or
    ``ACCELERATE_MIXED_PRECISION``, which ``accelerate launch`` sets even for one process.
    """
    world_size = os.environ.get("WORLD_SIZE", "1")
    return (world_size.isdigit() and int(world_size) > 1) or (
        "ACCELERATE_MIXED_PRECISION" in os.environ
    )


def is_main_process() -> bool:
    """Whether this is the main process (rank 0), from the launcher's environment; torch-free."""
    rank = os.environ.get("RANK", "0")
    return not rank.isdigit() or int(rank) == 0


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` backward."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


class Processes:
    """One process (``accelerator=None``) or the processes of an Accelerate run.

    Args:
        accelerator: an ``accelerate.Accelerator``, or None for a plain single-process loop.
    """

    def __init__(self, accelerator: Any | None = None) -> None:
        self.accelerator = accelerator
        # This process's share of the current global batch, times the number of processes:
        # 1 for equal slices. Scales the local loss so that DDP's average of the gradients is
        # the global batch's mean even when the batch does not divide evenly.
        self._weight = 1.0
        if accelerator is not None and not accelerator.is_main_process:
            # Only the main process logs: the others would repeat every line.
            logging.getLogger(__name__.partition(".")[0]).setLevel(logging.ERROR)

    @classmethod
    def detect(cls, accelerator: Any | None = None, *, train_encoder: bool = False) -> Processes:
        """The processes this run has: ``accelerator`` if given, Accelerate's if launched.

        Args:
            accelerator: a user's ``accelerate.Accelerator`` (its settings are used as they are).
            train_encoder: whether the encoder trains; its unused pooler layer then needs DDP's
                ``find_unused_parameters`` on the ``Accelerator`` made here.

        Raises:
            ConfigError: launched distributed, but ``accelerate`` is not installed.
        """
        if accelerator is not None:
            return cls(accelerator)
        if not launched():
            return cls()
        try:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs
        except ImportError as err:
            raise ConfigError(
                "this process was started by a distributed launcher (WORLD_SIZE="
                f"{os.environ.get('WORLD_SIZE')!r}), which needs accelerate: "
                "pip install 'routerdc[distributed]'"
            ) from err
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=train_encoder)]
        return cls(Accelerator(kwargs_handlers=handlers))

    # ------------------------------------------------------------------ who and where

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else int(self.accelerator.num_processes)

    @property
    def index(self) -> int:
        return 0 if self.accelerator is None else int(self.accelerator.process_index)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or bool(self.accelerator.is_main_process)

    @property
    def device(self) -> torch.device | None:
        """Accelerate's device, or None to let the recipe choose."""
        return None if self.accelerator is None else torch.device(self.accelerator.device)

    @property
    def gradient_accumulation_steps(self) -> int:
        return 1 if self.accelerator is None else int(self.accelerator.gradient_accumulation_steps)

    def precision(self, device: torch.device) -> str:
        """The precision the forward pass runs in: Accelerate's, else bf16 on CUDA."""
        if self.accelerator is not None:
            return str(self.accelerator.mixed_precision)
        return "bf16" if device.type == "cuda" else "no"

    # ------------------------------------------------------------------ the training step

    def local_rows(self, rows: np.ndarray) -> np.ndarray:
        """This process's contiguous slice of a global batch's rows (all of them in one).

        Raises:
            ConfigError: the global batch has fewer rows than there are processes.
        """
        if self.num_processes == 1:
            return rows
        if len(rows) < self.num_processes:
            raise ConfigError(
                f"batch_size must be at least the number of processes ({self.num_processes}), "
                f"got a global batch of {len(rows)}"
            )
        local = np.array_split(rows, self.num_processes)[self.index]
        self._weight = self.num_processes * len(local) / len(rows)
        return local

    def prepare(
        self, module: nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """``module`` (the one the step calls) wrapped for DDP and mixed precision."""
        if self.accelerator is None:
            return module, optimizer
        prepared, prepared_optimizer = self.accelerator.prepare(module, optimizer)
        return prepared, prepared_optimizer

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """Autocast for the forward pass: bf16 on CUDA alone; Accelerate's own when launched."""
        if self.accelerator is not None:
            return self.accelerator.autocast()
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def accumulate(self, module: nn.Module) -> contextlib.AbstractContextManager[Any]:
        """Accelerate's gradient accumulation: the optimizer steps every k-th batch."""
        if self.accelerator is None:
            return contextlib.nullcontext()
        return self.accelerator.accumulate(module)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``; when launched, Accelerate's (fp16 scaling, accumulation), of the
        loss weighted by this process's share of the global batch (1 for equal slices)."""
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss * self._weight)

    def gather_for_contrast(
        self, vectors: torch.Tensor, clusters: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's query vectors ``(B, D)`` and cluster ids ``(B,)``, in batch order.

        The sample-sample loss contrasts each query with in-batch neighbours, so under data
        parallelism every process needs the whole global batch, not only its slice. The gather
        carries no gradient, so the local slice is put back as the live tensor: gradients flow
        to this process's vectors only. Every process then computes the same global loss, and
        DDP averages the N local gradients; the local slice's gradient is multiplied by N (over
        the slice weight :meth:`backward` applies: B / B_local) so that the average is the
        global loss's gradient, as in a single process.
        """
        if self.num_processes == 1:
            return vectors, clusters
        parts = self._gather_uneven(vectors.detach())
        cluster_parts = self._gather_uneven(clusters)
        factor = sum(len(p) for p in parts) / max(len(vectors), 1)  # N / weight
        parts[self.index] = _ScaleGradient.apply(vectors, factor)
        return torch.cat(parts), torch.cat(cluster_parts)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The global batch's value of each per-slice mean: the slices' means, weighted by size.

        Values that are the same on every process (the gathered sample-sample loss) stay as
        they are, since the weights average to 1.
        """
        if self.num_processes == 1:
            return values
        assert self.accelerator is not None
        keys = sorted(values)
        weighted = [values[k] * self._weight for k in keys]
        local = torch.tensor(weighted, device=self.accelerator.device)
        averaged = self.accelerator.reduce(local, reduction="mean")
        return {k: float(v) for k, v in zip(keys, averaged.tolist(), strict=True)}

    def on_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on the main process only; every process gets its result."""
        if self.num_processes == 1:
            return compute()
        from accelerate.utils import broadcast_object_list

        box: list[Any] = [compute() if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        cache: EncodingCache,
        router: Router,
        queries: list[str],
        config: TrainConfig,
        *,
        progress: bool = True,
    ) -> torch.Tensor:
        """Pooled untrained-encoder outputs ``(N, D)`` on CPU, encoded a share per process.

        Each process encodes every N-th distinct query the cache lacks; the shares are gathered
        into every process's cache, which then answers for all of ``queries``.
        """
        if self.num_processes == 1:
            return cache.encode(router, queries, config, progress=progress)
        distinct = cache.missing(router, queries)
        mine = distinct[self.index :: self.num_processes]
        width = int(router.model.encoder.config.hidden_size)
        local = (
            cache.encode(router, mine, config, progress=progress) if mine else torch.zeros(0, width)
        )
        for index, part in enumerate(self._gather_uneven(local.to(self._device()))):
            cache.add(router, distinct[index :: self.num_processes], part.float().cpu())
        return cache.encode(router, queries, config)

    # ------------------------------------------------------------------ helpers

    def _device(self) -> torch.device:
        assert self.accelerator is not None
        return torch.device(self.accelerator.device)

    def _gather_uneven(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``tensor`` (first dimensions may differ), in process order."""
        assert self.accelerator is not None
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [int(s) for s in self.accelerator.gather(size).tolist()]
        longest = max(sizes)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = self.accelerator.gather(padded)  # (N * longest, ...)
        return [gathered[i * longest : i * longest + n] for i, n in enumerate(sizes)]
