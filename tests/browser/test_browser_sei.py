"""The SEI explorer in headless chromium: a real click runs a simulation, no exception shows."""

from __future__ import annotations

import pytest

from tests.browser.driver import exception_blocks, open_page


@pytest.mark.browser
def test_sei_page_runs_a_simulation_in_the_browser(streamlit_app, tmp_path):
    with open_page(f"{streamlit_app}/", width=1400, height=1800) as page:
        page.click("SEI explorer")
        assert "Activation barriers" in page.text()
        page.click("Run simulation")
        # The default 50×50 run is a job of the server's runner: its panel polls until it ends.
        page.wait_drawn(wait_for_text="Done in", wait_ms=120_000)
        text = page.text()
        assert "Thickness (nm)" in text and "Done in" in text
        assert exception_blocks(page.dom()) == []
        shot = page.screenshot(tmp_path / "sei_simulated.png")
        assert shot.stat().st_size > 20_000
        for tab in ("Latent space", "PC walks", "Barrier-conditioned generation", "Model quality"):
            page.click(tab)
            assert exception_blocks(page.dom()) == [], tab


@pytest.mark.browser
def test_a_deep_link_to_the_sei_page_goes_through_the_router(streamlit_app):
    with open_page(f"{streamlit_app}/sei-explorer", width=1400, height=900) as page:
        assert "Activation barriers" in page.text()
        nav = page.evaluate("document.querySelector('[data-testid=\"stSidebarNav\"]').innerText")
        assert "Home" in nav and "SEI explorer" in nav
