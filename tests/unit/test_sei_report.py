"""SEI model quality read from checkpoints: the table, and the scores on passivated runs alone."""

import json
import subprocess
import sys

import numpy as np

from battgen.eval import sei_metrics
from battgen.eval.sei_report import score_passivated_runs, sei_quality_table
from battgen.sei.dataset import STATUS_CODES
from battgen.sei.observables import PROPERTY_NAMES


class _Runs:
    """The two things the scoring reads of an SEI dataset: its run status and length."""

    def __init__(self, status):
        self.status = status

    def __len__(self):
        return 4 if self.status is None else len(self.status)


def _checkpoint(directory, indices, true, pred):
    directory.mkdir()
    np.savez(directory / "latents.npz", indices=indices, properties_true=true, properties_pred=pred,
             property_names=np.array(PROPERTY_NAMES))
    (directory / "metrics.json").write_text(json.dumps({"kind": "prvae", "test": {"properties": {}}}))
    return directory


def test_passivated_scores_use_only_the_runs_that_finished(tmp_path):
    assert sei_metrics._STATUS_COMPLETE == STATUS_CODES["complete"]
    gen = np.random.default_rng(0)
    status = np.where(np.arange(30) % 3 == 0, STATUS_CODES["max_steps"], STATUS_CODES["complete"]).astype(np.int8)
    indices = np.arange(10, 30)
    true = gen.random((20, len(PROPERTY_NAMES)))
    pred = true.copy()
    truncated = status[indices] != STATUS_CODES["complete"]
    pred[truncated] = gen.random((int(truncated.sum()), len(PROPERTY_NAMES)))  # wrong on truncated runs only
    ckpt = _checkpoint(tmp_path / "sei_prvae", indices, true, pred)

    result = score_passivated_runs(ckpt, _Runs(status))
    assert result["n"] == int((~truncated).sum()) and result["n_truncated"] == int(truncated.sum())
    assert all(v["r2"] == 1.0 for v in result["properties"].values())  # perfect where it finished
    stored = json.loads((ckpt / "metrics.json").read_text())
    assert stored["test_passivated"]["n"] == result["n"] and stored["kind"] == "prvae"  # merged, not replaced

    table = sei_quality_table({"prVAE": ckpt})
    assert table.loc[0, "trained on"] == "all runs"
    assert table.loc[0, f"R² {PROPERTY_NAMES[0]}, passivated runs"] == 1.0


def test_dataset_without_status_counts_every_run_as_passivated():
    assert sei_metrics.passivated_runs(_Runs(None)).tolist() == [True] * 4


def test_cli_eval_sei_runs_is_registered():
    out = subprocess.run([sys.executable, "-m", "battgen", "eval", "sei-runs", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--data" in out.stdout
