"""What every trainer does the same way: seeding, threads, devices, the time budget, early stopping."""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any, Callable

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for batch order and sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    # cuDNN autotuning picks algorithms by timing, which can change results run to run.
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads (torch and the OpenMP/BLAS pools its workers start); None keeps
    the process's policy (battgen.runtime: one passive thread unless BATTGEN_THREADS says more)."""
    if threads:
        from battgen.runtime import configure_threads

        configure_threads(int(threads))


def make_accelerator(device: torch.device):
    """An ``accelerate.Accelerator`` on ``device`` (multi-process when started by ``accelerate launch``).

    In a plain single process, accelerate's device state is a process-wide singleton fixed by the
    first Accelerator; it is reset here so that a second training in the same process (tests,
    notebooks) can use another device, and an explicit ``cuda:N`` is honoured.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
    return Accelerator(cpu=device.type == "cpu")


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s weights on the host, safe from later optimiser steps."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class TimeBudget:
    """The wall-clock budget of a training loop (``max_minutes`` None: unlimited), started now."""

    def __init__(self, max_minutes: float | None):
        self.seconds = None if max_minutes is None else 60.0 * max_minutes
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction_spent(self) -> float:
        return 0.0 if self.seconds is None else self.elapsed() / self.seconds

    def exhausted(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds

    def allows_epoch(self, epoch_seconds: list[float]) -> bool:
        """Whether one more epoch, as long as the slowest so far, still fits."""
        if self.seconds is None or not epoch_seconds:
            return True
        return self.elapsed() + max(epoch_seconds) <= self.seconds


class EarlyStopping:
    """Keeps the weights of the best validation score and says when to stop.

    ``update`` takes an epoch's score and a ``snapshot`` callable, called only on improvement (so
    the weights are copied only then); it returns why training should stop, or None.
    ``patience``: epochs without improvement before stopping; 0 never stops early.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        """Forget the best so far (when the objective changes, earlier scores no longer compare)."""
        self.best_score = math.inf
        self.best_epoch = -1
        self.best_state: Any = None
        self.bad_epochs = 0

    def update(self, epoch: int, score: float, snapshot: Callable[[], Any], *, counts: bool = True) -> str | None:
        """``counts=False``: a worse epoch does not use up patience (the objective is still warming up)."""
        if not math.isfinite(score):
            return "non_finite_loss"
        if score < self.best_score:
            self.best_score, self.best_epoch, self.best_state = score, epoch, snapshot()
            self.bad_epochs = 0
        elif counts:
            self.bad_epochs += 1
            if self.patience and self.bad_epochs >= self.patience:
                return "early_stopping"
        return None

    def best(self) -> Any:
        """The kept snapshot; RuntimeError when no epoch had a finite score."""
        if self.best_state is None:
            raise RuntimeError("training produced no finite validation loss; nothing to save")
        return self.best_state
