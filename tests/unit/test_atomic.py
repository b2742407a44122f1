"""A writer killed mid-way leaves the previous version readable (battgen.atomic).

Each test writes a first version, then starts a second write of a large file in a subprocess,
kills it with SIGKILL once the new bytes are hitting the disk, and reads the target back. A
control test kills a plain ``np.savez_compressed`` the same way and finds the file broken, so
the kill does land mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from battgen import atomic

REPO = Path(__file__).resolve().parents[2]
# About 5 s of compression on one busy core: long enough to be caught in the middle.
LARGE_VALUES = 24 * 1024 * 1024
WRITER_START_TIMEOUT_S = 120


def kill_mid_write(code: str, started: Callable[[], bool]) -> None:
    """Run ``code`` in a fresh interpreter and SIGKILL it as soon as ``started()`` holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WRITER_START_TIMEOUT_S
    try:
        while not started():
            if process.poll() is not None:
                pytest.fail(f"the writer ended (code {process.returncode}) before it could be killed: "
                            f"{process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the writer did not start writing in time")
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def temporary_bytes(target: Path) -> int:
    """Bytes written so far under the hidden temporary siblings of ``target``."""
    return sum(f.stat().st_size for t in target.parent.glob(f".{target.name}.*")
               for f in ([t] if t.is_file() else t.rglob("*")) if f.is_file())


LARGE_NPZ = f"""
    import numpy as np
    from battgen import atomic
    values = np.random.default_rng(1).random({LARGE_VALUES}, dtype=np.float32)
    atomic.save_npz({{target!r}}, values=values)
"""


def test_a_killed_npz_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "dataset.npz"
    atomic.save_npz(target, values=np.arange(10))
    kill_mid_write(LARGE_NPZ.format(target=str(target)), lambda: temporary_bytes(target) > 0)
    with np.load(target, allow_pickle=False) as data:
        assert data["values"].tolist() == list(range(10))


def test_control_a_killed_plain_write_breaks_the_file(tmp_path):
    target = tmp_path / "dataset.npz"
    np.savez_compressed(target, values=np.arange(10))
    first = target.stat().st_mtime_ns
    code = LARGE_NPZ.format(target=str(target)).replace("atomic.save_npz(", "np.savez_compressed(")
    kill_mid_write(code, lambda: target.stat().st_mtime_ns != first and target.stat().st_size > 4096)
    with pytest.raises((zipfile.BadZipFile, ValueError, OSError, EOFError)):
        with np.load(target, allow_pickle=False) as data:
            data["values"]


@pytest.mark.slow  # pandas + pymatgen imports in the writer: about 20 s on 2 busy cores
def test_a_killed_table_write_leaves_the_previous_table(tmp_path):
    import pandas as pd

    from battgen.data.table import load_table, save_table

    shipped = load_table()
    save_table(shipped, tmp_path)
    code = f"""
        import pandas as pd
        from battgen.data.table import load_table, save_table
        table = load_table()
        big = pd.concat([table] * 400, ignore_index=True)
        save_table(big, {str(tmp_path)!r})
    """
    target = tmp_path / "electrodes.parquet"
    kill_mid_write(code, lambda: temporary_bytes(target) > 0)
    again = load_table(tmp_path)
    pd.testing.assert_frame_equal(again[["id", "average_voltage"]], shipped[["id", "average_voltage"]])


@pytest.mark.slow  # torch + diffusers imports in the writer: about 15 s on 2 busy cores
def test_a_killed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path):
    from battgen.models.atom_regressor import AtomRegressor

    checkpoint = tmp_path / "atom_regressor"
    with atomic.atomic_directory(checkpoint) as directory:
        AtomRegressor(latent_size=4, conv_channels=(4, 8), hidden_units=16).save_pretrained(directory)
    code = f"""
        import numpy as np
        from battgen import atomic
        from battgen.models.atom_regressor import AtomRegressor
        with atomic.atomic_directory({str(checkpoint)!r}) as directory:
            AtomRegressor(latent_size=4, conv_channels=(4, 8), hidden_units=32).save_pretrained(directory)
            values = np.random.default_rng(1).random({LARGE_VALUES}, dtype=np.float32)
            np.savez_compressed(directory / "latents.npz", values=values)
    """
    kill_mid_write(code, lambda: temporary_bytes(checkpoint) > 64 * 1024)
    model = AtomRegressor.from_pretrained(checkpoint)
    assert model.config.hidden_units == 16
    assert not (checkpoint / "latents.npz").exists()


def test_a_directory_is_replaced_whole_and_a_failed_write_changes_nothing(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic.atomic_directory(target) as directory:
        (directory / "a.txt").write_text("first")
        (directory / "only_in_first.txt").write_text("x")
    with atomic.atomic_directory(target) as directory:
        (directory / "a.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert (target / "a.txt").read_text() == "second"
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(target) as directory:
            (directory / "a.txt").write_text("third")
            raise RuntimeError("the writer failed")
    assert (target / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temporary left behind


def test_written_files_get_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic.write_text(tmp_path / "metrics.json", "{}\n")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
