"""The home page as a person sees it, rendered by headless chromium."""

from __future__ import annotations

import pytest

from tests.browser.driver import exception_blocks, open_page, running_streamlit

pytestmark = pytest.mark.browser


def test_home_page_renders_without_exceptions(streamlit_app, tmp_path):
    with open_page(streamlit_app, wait_for_text="Checkpoints") as page:
        dom = page.dom()
        shown = page.text()
        png = page.screenshot(tmp_path / "home.png")

    assert "<title>BattGen</title>" in dom, "set_page_config did not reach the browser"
    for section in ("BattGen", "Compute", "Checkpoints", "Datasets"):
        assert section in shown, f"home page lacks the {section!r} section; it shows:\n{shown[:1500]}"
    assert exception_blocks(dom) == [], f"home page shows an exception: {exception_blocks(dom)}"
    assert "Traceback" not in shown

    # A real PNG of a drawn page, not an empty or blank capture: file signature and size.
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"screenshot is suspiciously small ({len(data)} bytes): page likely blank"


def test_exception_blocks_detects_a_rendered_streamlit_exception(tmp_path):
    """Guards the guard: exception_blocks must see what Streamlit draws for an uncaught error,
    or the home-page test above could never fail on one."""
    from tests.browser.driver import dump_dom, running_streamlit

    failing_script = tmp_path / "failing_app.py"
    failing_script.write_text(
        "import streamlit as st\n"
        "st.title('Failing page')\n"
        "raise RuntimeError('deliberate failure for the exception detector')\n"
    )
    with running_streamlit(str(failing_script)) as base_url:
        dom = dump_dom(base_url, wait_for_text="Failing page")
    blocks = exception_blocks(dom)
    assert len(blocks) == 1
    assert "deliberate failure for the exception detector" in blocks[0]


def test_a_deep_link_to_a_fresh_server_opens_the_page_without_page_not_found():
    # A server of its own: the stray dialog came only on a fresh server's first script run.
    with running_streamlit("app.py") as base_url:
        with open_page(f"{base_url}/structure-browser", wait_for_text="Distributions") as page:
            page.wait_drawn()
            text, dom = page.text(), page.dom()
    assert "Distributions" in text
    # The dialog sits in a portal outside the text the page reads; look for it in the DOM.
    assert "Page not found" not in dom
