"""The Screening page in headless chromium: Generate with the shipped model draws ranked candidates."""

from __future__ import annotations

import time

import pytest

from tests.browser.driver import exception_blocks, open_page

# The real checkpoint denoises 10 steps for 4 samples on CPU, then ranks and draws the results.
GENERATION_TIMEOUT_S = 240


@pytest.mark.browser
def test_generating_candidates_draws_the_ranked_table(streamlit_app, tmp_path):
    with open_page(f"{streamlit_app}/candidate-screening", width=1400, height=2600, wait_ms=180_000,
                   wait_for_text="Working ion") as page:
        assert page.click_text("button", "Generate"), "no Generate button"
        deadline = time.monotonic() + GENERATION_TIMEOUT_S
        while time.monotonic() < deadline and "Ranked candidates" not in page.text():
            time.sleep(0.5)
        page.wait_drawn()
        text = page.text()
        assert "Ranked candidates" in text and "Best property match" in text, text[-800:]
        assert "Generated samples" in text and "Candidates (CSV)" in text
        assert exception_blocks(page.dom()) == []
        plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        assert plots >= 1
        shot = page.screenshot(tmp_path / "screening_generated.png")
        assert shot.stat().st_size > 20_000
