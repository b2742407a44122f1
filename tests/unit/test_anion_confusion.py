"""Which anion the atom regressor reads as a view's main one."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.data.composition import composition_vector
from battgen.eval.afm_report import anion_confusion


def test_each_true_main_anion_gets_its_row_and_the_shares_it_was_read_as():
    true = np.stack([composition_vector(f) for f in ("LiCoO2", "LiCoO2", "LiFeF3", "LiFeF3", "LiFeF3", "LiFeF3",
                                                     "Li3V2(PO4)3", "LiAl")])
    pred = np.stack([composition_vector(f) for f in ("LiCoO2", "LiCoS2", "LiFeO3", "LiFeF3", "LiFeF3", "LiFeSF2",
                                                     "Li3V2(PO4)3", "LiO")])
    frame = anion_confusion(true, pred)
    # Phosphate: O is its main anion; LiAl has no anion and is left out; LiFeSF2 still reads F first.
    assert list(frame["main anion"]) == ["O", "F"] and list(frame["views"]) == [3, 4]
    oxide, fluoride = frame.iloc[0], frame.iloc[1]
    assert oxide["read right (%)"] == pytest.approx(66.7) and oxide["read as S (%)"] == pytest.approx(33.3)
    assert fluoride["read right (%)"] == 75.0 and fluoride["read as O (%)"] == 25.0
    # Only the anions some view was read as get a column.
    assert [c for c in frame.columns if c.startswith("read as")] == ["read as O (%)", "read as F (%)",
                                                                     "read as S (%)"]
