"""What the trainers share: early stopping with best-weights keeping, the time budget, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, seed_everything


def _run(stopper: EarlyStopping, scores, counts=None) -> tuple[list[int], str | None]:
    """Feed ``scores``; return the epochs whose snapshot was taken and the stop reason."""
    snapped = []
    for epoch, score in enumerate(scores):
        reason = stopper.update(epoch, score, lambda e=epoch: snapped.append(e) or f"state {e}",
                                counts=True if counts is None else counts[epoch])
        if reason:
            return snapped, reason
    return snapped, None


def test_early_stopping_keeps_the_best_and_stops_after_patience_worse_epochs():
    stopper = EarlyStopping(patience=2)
    snapped, reason = _run(stopper, [5.0, 3.0, 4.0, 2.5, 2.6, 2.7, 1.0])
    assert reason == "early_stopping" and snapped == [0, 1, 3]  # copies only on improvement
    assert stopper.best_epoch == 3 and stopper.best_score == 2.5 and stopper.best() == "state 3"


def test_patience_zero_never_stops_and_uncounted_epochs_spend_no_patience():
    snapped, reason = _run(EarlyStopping(patience=0), [1.0] + [2.0] * 50)
    assert reason is None and snapped == [0]
    stopper = EarlyStopping(patience=1)
    _, reason = _run(stopper, [1.0, 2.0, 2.0, 2.0], counts=[True, False, False, False])
    assert reason is None and stopper.bad_epochs == 0


def test_a_non_finite_score_stops_and_reset_forgets_the_best():
    stopper = EarlyStopping(patience=5)
    _, reason = _run(stopper, [1.0, math.nan])
    assert reason == "non_finite_loss" and stopper.best() == "state 0"
    stopper.reset()
    with pytest.raises(RuntimeError, match="no finite validation loss"):
        stopper.best()
    snapped, _ = _run(stopper, [9.0])  # after a reset any finite score is the new best
    assert snapped == [0] and stopper.best_score == 9.0


def test_time_budget():
    assert TimeBudget(None).allows_epoch([1e9]) and not TimeBudget(None).exhausted()
    budget = TimeBudget(1.0)
    assert budget.allows_epoch([]) and budget.allows_epoch([30.0]) and not budget.allows_epoch([10.0, 61.0])
    assert 0.0 <= budget.fraction_spent() < 0.5 and not budget.exhausted()
    budget.start -= 61.0  # a minute and a second later
    assert budget.exhausted() and budget.fraction_spent() > 1.0 and not budget.allows_epoch([0.5])


def test_cpu_state_is_a_copy_and_seeding_repeats():
    layer = torch.nn.Linear(2, 2)
    kept = cpu_state(layer)
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert not torch.equal(kept["weight"], layer.weight)
    draws = [torch.randn(3, generator=seed_everything(4)).tolist() + [torch.rand(1).item()] for _ in range(2)]
    assert draws[0] == draws[1]
