"""The AFM page in headless chromium: a live ppafm simulation draws its stack."""

from __future__ import annotations

import time

import pytest

from tests.browser.driver import exception_blocks, open_page


@pytest.mark.browser
def test_simulating_a_structure_draws_its_stack(streamlit_app, tmp_path):
    with open_page(f"{streamlit_app}/afm-translation", width=1400, height=1500, wait_for_text="Stack from") as page:
        assert page.click_text("label", "Simulate from a structure", exact=True), "no 'Simulate from a structure' choice"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not page.click_text("button", "Simulate"):
            time.sleep(0.5)
        assert time.monotonic() < deadline, "no Simulate button"
        deadline = time.monotonic() + 90
        # ", view 1" is in the subheader of a simulated stack only, never in an example's; the
        # running job's progress line ("view 1 of 4") has no comma, and "Tip height" (an axis of
        # the drawn stack) appears only once the job has ended.
        while time.monotonic() < deadline and not (", view 1" in (text := page.text()) and "Tip height" in text):
            time.sleep(0.5)
        page.wait_drawn()
        text = page.text()
        assert ", view 1" in text and "Tip height" in text, text[-500:]
        assert "h10" in text  # the small multiples of all ten heights
        assert exception_blocks(page.dom()) == []
        plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        assert plots >= 2
        shot = page.screenshot(tmp_path / "afm_simulated.png")
        assert shot.stat().st_size > 20_000


@pytest.mark.browser
def test_a_shipped_example_is_translated_into_descriptors_and_a_composition(streamlit_app, tmp_path):
    with open_page(f"{streamlit_app}/afm-translation", width=1400, height=2400, wait_for_text="Formula guess") as page:
        page.wait_drawn()
        text = page.text()
        assert "Descriptors" in text and "Predicted composition" in text and "Nearest materials" in text
        assert exception_blocks(page.dom()) == []
        # stack, all heights, descriptors next to the truth, composition
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") >= 4
        shot = page.screenshot(tmp_path / "afm_example.png")
        assert shot.stat().st_size > 20_000
