"""Nothing leaves the machine: every request a page makes while it loads goes to the app itself.

Headless chromium records each request (DevTools Network events, from before the first one)
while every page of the app loads; any URL whose host is not the loopback interface fails the
test, the favicon and fonts included. The server's XSRF protection is checked on the same
running app: an upload without Streamlit's XSRF token is refused.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.driver import open_page, running_streamlit

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Schemes that name no network location (inline data, in-page objects).
LOCAL_SCHEMES = {"data", "blob", "about"}
# Requests a page makes after it is drawn (fonts, iframes of components, lazy images) get this long.
LATE_REQUESTS_S = 2.0


def page_paths() -> list[str]:
    # app.py's router serves each pages/<name>.py at /<name with dashes> (Capability.url_path).
    return ["", *sorted(p.stem.replace("_", "-") for p in (REPO / "pages").glob("*.py"))]


def outside_requests(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).hostname not in LOCAL_HOSTS]


def requests_while_loading(url: str) -> list[str]:
    with open_page(url, record_requests=True) as page:
        time.sleep(LATE_REQUESTS_S)
        return page.requested_urls()


@pytest.mark.parametrize("path", page_paths())
def test_loading_a_page_requests_nothing_outside_the_machine(streamlit_app, path):
    urls = requests_while_loading(f"{streamlit_app}/{path}")
    assert any(urlsplit(u).path.endswith("/_stcore/stream") for u in urls), urls  # the recorder sees the app
    assert outside_requests(urls) == [], f"/{path} requested outside the machine: {outside_requests(urls)}"


def test_the_recorder_sees_a_request_to_another_host(tmp_path):
    """Guards the guard: a page that loads an image from elsewhere must be caught."""
    script = tmp_path / "remote_image.py"
    script.write_text("import streamlit as st\n"
                      "st.title('Remote image')\n"
                      "st.markdown('<img src=\"http://example.invalid/pixel.png\">', unsafe_allow_html=True)\n")
    with running_streamlit(str(script)) as base_url:
        urls = requests_while_loading(base_url)
    assert outside_requests(urls) == ["http://example.invalid/pixel.png"], urls


def test_an_upload_without_the_xsrf_token_is_refused(streamlit_app):
    request = urllib.request.Request(f"{streamlit_app}/_stcore/upload_file/session/file", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
