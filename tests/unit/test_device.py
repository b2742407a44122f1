"""Device choice: explicit argument, then BATTGEN_DEVICE, then CUDA if present, else CPU."""

from __future__ import annotations

import os

import pytest
import torch

from battgen.device import DEVICE_ENV_VAR, device_summary, get_device

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def no_device_env(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)


def test_default_is_cuda_when_available_else_cpu():
    assert get_device().type == ("cuda" if CUDA else "cpu")
    assert get_device("auto").type == ("cuda" if CUDA else "cpu")


def test_explicit_cpu_wins_over_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
    assert get_device("cpu") == torch.device("cpu")


def test_environment_variable_is_respected(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, " CPU ")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV_VAR, "")
    assert get_device().type == ("cuda" if CUDA else "cpu")


def test_cuda_request_fails_loudly_without_cuda():
    if CUDA:
        assert get_device("cuda").type == "cuda"
        with pytest.raises(ValueError, match="CUDA device"):
            get_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            get_device("cuda")


@pytest.mark.parametrize("bad", ["gpu0", "mps", "tpu"])
def test_unknown_device_names_are_rejected(bad):
    with pytest.raises(ValueError, match="use 'auto', 'cpu', 'cuda'"):
        get_device(bad)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "gpu0")
    with pytest.raises(ValueError, match=DEVICE_ENV_VAR):
        get_device()


def test_device_summary_reports_this_machine():
    summary = device_summary()
    assert summary["cpu_count"] == os.cpu_count()
    assert summary["torch_version"] == torch.__version__
    assert summary["torch_threads"] == torch.get_num_threads()
    assert summary["cuda_available"] is CUDA
    assert summary["device"] == str(get_device())
    if CUDA:
        assert summary["device_name"] == torch.cuda.get_device_name(0)
        assert summary["cuda_device_count"] == torch.cuda.device_count()
    else:
        assert summary["device_name"] == "CPU"
        assert summary["cuda_device_count"] == 0
