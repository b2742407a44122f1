"""The Structures page in headless chromium: the 3D viewer really draws a crystal with WebGL."""

from __future__ import annotations

import base64
import io
import time

import pytest

from tests.browser.driver import exception_blocks, open_page

# The viewer iframe is written by battgen.viz.structure3d; 3Dmol.js puts one canvas in it.
_VIEWER_STATE_JS = """(() => {
  for (const frame of document.querySelectorAll('iframe')) {
    let doc;
    try { doc = frame.contentDocument; } catch (e) { continue; }
    if (!doc || !doc.querySelector('.structure-viewer')) continue;
    const canvas = doc.querySelector('canvas');
    const box = frame.getBoundingClientRect();
    const problem = doc.getElementById('viewer-problem');
    return {
      scriptLoaded: typeof frame.contentWindow.$3Dmol !== 'undefined',
      canvas: !!canvas,
      // 3Dmol's own render of its WebGL scene; empty when no GL context could be made.
      png: (() => { const w = frame.contentWindow;
                    const k = Object.keys(w).find(k => k.startsWith('viewer_'));
                    try { return k ? w[k].pngURI() : ''; } catch (e) { return ''; } })(),
      width: canvas ? canvas.width : 0,
      height: canvas ? canvas.height : 0,
      problem: problem && problem.style.display !== 'none' ? problem.innerText : '',
      legend: (doc.querySelector('.element-legend') || {}).innerText || '',
      box: {x: box.x, y: box.y, w: box.width, h: box.height},
    };
  }
  return null;
})()"""


def _viewer_state(page, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(_VIEWER_STATE_JS)
        if state and state["canvas"] and state["width"] > 0:
            return state
        time.sleep(0.3)
    raise AssertionError(f"no 3D viewer canvas appeared: {state}")


@pytest.mark.browser
def test_structure_viewer_renders_a_webgl_canvas(streamlit_app, tmp_path):
    from PIL import Image

    with open_page(f"{streamlit_app}/structure-browser", width=1400, height=1400,
                   wait_for_text="Voltage profile") as page:
        assert exception_blocks(page.dom()) == []
        state = _viewer_state(page)
        assert state["scriptLoaded"], "3Dmol.js did not load from the app's static folder"
        assert state["png"].startswith("data:image/png;base64,"), "no WebGL rendering from 3Dmol"
        assert state["problem"] == "", state["problem"]
        assert state["legend"].strip(), "the element legend is missing"
        # The viewer sits below the filters; bring it into the viewport so the screenshot holds it.
        page.evaluate("""(() => { for (const f of document.querySelectorAll('iframe')) {
            let d; try { d = f.contentDocument; } catch (e) { continue; }
            if (d && d.querySelector('.structure-viewer')) { f.scrollIntoView({block: 'center'}); return; } } })()""")
        time.sleep(1.0)  # let 3Dmol finish its first frame
        state = _viewer_state(page)  # its box after scrolling
        shot = page.screenshot(tmp_path / "structures.png")
    rendered = Image.open(io.BytesIO(base64.b64decode(state["png"].split(",", 1)[1]))).convert("RGB")
    assert len(rendered.quantize(colors=64).getcolors()) > 8, "the WebGL canvas is blank"
    image = Image.open(shot).convert("RGB")
    box = state["box"]
    viewer = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"])))
    # A drawn crystal: coloured atoms and the cell's lines over a white background.
    colours = viewer.quantize(colors=64).getcolors()
    non_white = sum(n for n, _ in colours) - max(n for n, _ in colours)
    assert len(colours) > 8 and non_white > 0.02 * viewer.width * viewer.height, (len(colours), non_white)
    buffer = io.BytesIO()
    viewer.save(buffer, format="PNG")
    assert buffer.tell() > 5_000


@pytest.mark.browser
def test_distribution_tab_draws_without_errors(streamlit_app):
    with open_page(f"{streamlit_app}/structure-browser", width=1400, height=1000, wait_for_text="Voltage profile") as page:
        page.click("Distributions")
        assert "Hover a point" in page.text()
        page.click("Evaluate my electrode")
        assert "Upload the" in page.text()
        assert exception_blocks(page.dom()) == []


@pytest.mark.browser
def test_a_deep_link_to_the_structures_page_goes_through_the_router(streamlit_app):
    with open_page(f"{streamlit_app}/structure-browser", width=1400, height=900,
                   wait_for_text="Voltage profile") as page:
        nav = page.evaluate("document.querySelector('[data-testid=\"stSidebarNav\"]').innerText")
        assert "Home" in nav and "Structures" in nav
