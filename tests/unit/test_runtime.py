"""The thread policy must reach torch, which only reads it before it is first imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from battgen.paths import REPO_ROOT
from battgen.runtime import requested_threads

_PROBE = ("import json, os; from battgen.runtime import configure_threads; n = configure_threads(); import torch; "
          "print(json.dumps({'n': n, 'torch': torch.get_num_threads(), 'wait': os.environ.get('OMP_WAIT_POLICY')}))")


# Everything configure_threads may set: a test process that ran the CLI before has them all.
POLICY_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "BATTGEN_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def clean_environment() -> dict:
    return {k: v for k, v in os.environ.items() if k not in POLICY_VARIABLES}


def probe(**env) -> dict:
    clean = clean_environment()
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO_ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_policy_is_one_passive_thread():
    assert probe() == {"n": 1, "torch": 1, "wait": "PASSIVE"}


def test_battgen_threads_overrides_and_user_settings_are_kept():
    assert probe(BATTGEN_THREADS="2") == {"n": 2, "torch": 2, "wait": "PASSIVE"}
    assert probe(OMP_NUM_THREADS="2", OMP_WAIT_POLICY="ACTIVE") == {"n": 2, "torch": 2, "wait": "ACTIVE"}


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_thread_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("BATTGEN_THREADS", value)
    with pytest.raises(ValueError, match="BATTGEN_THREADS"):
        requested_threads()


def test_the_cli_applies_the_policy_before_torch_loads():
    # `battgen sei simulate` never imports torch itself: torch imported after it shows what main() set up.
    code = ("import contextlib, io, sys; from battgen.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['sei', 'simulate', '--size', '8', '--max-steps', '100', '--json']) == 0\n"
            "import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=clean_environment(), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"
