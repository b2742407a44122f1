"""The AFM page in headless chromium: a live ppafm simulation draws its stack."""

from __future__ import annotations

import time

import pytest

from tests.browser import exception_blocks, open_page

# A DOM click, not a mouse event: it reaches the button whatever Streamlit lays over the page
# (a plain `streamlit run app.py` shows a "Page not found" dialog on a fresh server's first
# deep link; battgen/ui/serve.py, which the tests start, avoids it).
_CLICK_SIMULATE_JS = """(() => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim().endsWith('Simulate'));
  if (!button) return false;
  button.click();
  return true;
})()"""


@pytest.mark.browser
def test_simulating_a_structure_draws_its_stack(streamlit_app, tmp_path):
    with open_page(f"{streamlit_app}/afm-translation", width=1400, height=1500, wait_for_text="Stack from") as page:
        assert page.evaluate(_CLICK_SIMULATE_JS), "no Simulate button"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "Tip height" not in page.text():
            time.sleep(0.5)
        page.wait_drawn()
        text = page.text()
        assert "view 1" in text and "Tip height" in text, text[-500:]
        assert "h10" in text  # the small multiples of all ten heights
        assert exception_blocks(page.dom()) == []
        plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        assert plots >= 2
        shot = page.screenshot(tmp_path / "afm_simulated.png")
        assert shot.stat().st_size > 20_000
