"""Which torch device BattGen computes on, and a summary of it for the app and metadata."""

from __future__ import annotations

import os

import torch

DEVICE_ENV_VAR = "BATTGEN_DEVICE"


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on.

    Order of precedence: ``prefer`` argument, then the ``BATTGEN_DEVICE`` environment
    variable, then CUDA when available, else CPU. An explicit request for CUDA on a
    machine without it is an error rather than a silent fallback, so that a run the user
    believes is on the GPU never quietly takes hours on the CPU.
    """
    requested = prefer if prefer is not None else os.environ.get(DEVICE_ENV_VAR)
    if requested is None or requested.strip() == "" or requested.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    requested = requested.strip().lower()
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(
            f"unknown device {requested!r} (from {'argument' if prefer is not None else DEVICE_ENV_VAR}); "
            "use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {requested!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def device_summary() -> dict:
    """Facts about the compute device, free of host names so they can go into metadata."""
    device = get_device()
    cuda_available = torch.cuda.is_available()
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = "CPU"
    return {
        "device": str(device),
        "device_name": device_name,
        "cuda_available": cuda_available,
        "cuda_device_count": torch.cuda.device_count() if cuda_available else 0,
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
