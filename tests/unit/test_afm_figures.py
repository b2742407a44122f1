"""AFM page figures: what the composition chart shows beside the truth."""

from __future__ import annotations

from battgen.viz.afm import composition_figure


def test_a_true_element_the_model_misses_still_gets_its_bar_and_marker():
    # The shipped LiCuF3 example's kind of miss: fluorine read, lithium and copper barely predicted.
    predicted = [("F", 8.8), ("O", 1.3), ("Na", 1.1), ("Co", 1.0), ("Zn", 0.3), ("S", 0.3), ("K", 0.3),
                 ("Ni", 0.2), ("Cu", 0.1)]
    fig = composition_figure(predicted, truth={"F": 12.0, "Li": 4.0, "Cu": 4.0})
    bars, markers = fig.data
    assert list(bars.x) == ["F", "O", "Na", "Co", "Zn", "S", "K", "Ni", "Li", "Cu"]
    assert list(bars.y)[-2:] == [0.0, 0.1]  # Li below the listing's cut-off, Cu at its small count
    assert dict(zip(markers.x, markers.y)) == {"F": 12.0, "O": 0.0, "Na": 0.0, "Co": 0.0, "Zn": 0.0, "S": 0.0,
                                               "K": 0.0, "Ni": 0.0, "Li": 4.0, "Cu": 4.0}


def test_without_truth_it_shows_the_k_largest_predictions_only():
    predicted = [(s, 10.0 - i) for i, s in enumerate(["O", "Fe", "P", "Li", "Mn", "Co", "Ni", "F", "C", "H"])]
    fig = composition_figure(predicted, k=8)
    assert len(fig.data) == 1 and list(fig.data[0].x) == ["O", "Fe", "P", "Li", "Mn", "Co", "Ni", "F"]
    assert not fig.layout.showlegend


def test_the_spread_over_orientations_becomes_error_bars_on_the_shown_elements():
    predicted = [("O", 6.0), ("Fe", 2.0)]
    fig = composition_figure(predicted, truth={"O": 4.0, "Li": 1.0}, spread={"O": 0.5, "Fe": 0.25, "Li": 0.1})
    bars = fig.data[0]
    assert list(bars.x) == ["O", "Fe", "Li"]
    assert list(bars.error_y.array) == [0.5, 0.25, 0.1]
    assert composition_figure(predicted).data[0].error_y.array is None
