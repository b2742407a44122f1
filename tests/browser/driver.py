"""Drive the real app in headless Debian chromium: start ``streamlit run``, screenshot, read the DOM.

Streamlit draws every element client-side from websocket messages, so the only way to
check what a scientist actually sees is a real browser. ``make test`` installs
/usr/bin/chromium; if it is missing these helpers fail the test with a message saying so,
because a browser test that skips would let a broken page pass CI.

Chromium's one-shot ``--dump-dom`` / ``--screenshot`` flags stop on a *virtual* time budget
that runs out while Streamlit still waits on its websocket, so they capture the grey
loading skeleton. These helpers instead drive chromium over the DevTools protocol and wait
until the app reports that its script run has finished and the page text has settled.

Usage from a test (the ``streamlit_app`` fixture, a base URL, lives in tests/conftest.py)::

    from tests.browser.driver import dump_dom, open_page, screenshot

    @pytest.mark.browser
    def test_sei_page(streamlit_app, tmp_path):
        html = dump_dom(f"{streamlit_app}/sei-explorer", wait_for_text="SEI")
        screenshot(f"{streamlit_app}/sei-explorer", tmp_path / "sei.png")
        with open_page(f"{streamlit_app}/sei-explorer") as page:
            page.click("Run simulation")
            assert "thickness" in page.text()
            page.screenshot(tmp_path / "after_run.png")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("BATTGEN_CHROMIUM", "/usr/bin/chromium"))
SERVER_START_TIMEOUT_S = 60
CHROMIUM_START_TIMEOUT_S = 30
CDP_CALL_TIMEOUT_S = 60
# Upper bound on waiting for a page to draw; a healthy page returns as soon as it settles.
# Generous because the first visit to a page imports torch and loads models on 2 cores.
DEFAULT_WAIT_MS = 60_000
# After the script run ends, how long the page text must stay unchanged before it counts
# as drawn (charts and iframes finish laying out after the run).
DEFAULT_SETTLE_MS = 500

# Without the background-networking flags chromium keeps trying to reach Google services,
# which this sandbox refuses, slowing every start; --no-sandbox because tests run as root.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
]


# --------------------------------------------------------------------------- the app server


def streamlit_python() -> Path:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return venv_python if venv_python.exists() else Path(sys.executable)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_streamlit(
    script: str = "app.py", *, port: int | None = None, timeout_s: float = SERVER_START_TIMEOUT_S
) -> Iterator[str]:
    """Run ``streamlit run SCRIPT`` from the repo root; yield its base URL until the block ends."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="battgen-streamlit-", suffix=".log")[1])
    # app.py goes through the project's launcher (battgen/ui/serve.py), as `make app` does.
    launcher = ["battgen.ui.serve"] if script == "app.py" else ["streamlit", "run", script]
    command = [
        str(streamlit_python()), "-m", *launcher,
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log_path.open("wb") as log_handle:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while not _health_ok(base_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {process.returncode} before serving:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"streamlit did not answer {base_url}/_stcore/health within {timeout_s:.0f} s:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(process)
        log_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- chromium


def require_chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"browser tests need Debian chromium at {CHROMIUM}, which is missing. "
            "`make test` installs it (apt-get install chromium); install it by hand if apt failed.",
            pytrace=False,
        )
    return CHROMIUM


class _DevToolsConnection:
    """Just enough of the Chrome DevTools Protocol to load a page, wait, click and read it back."""

    def __init__(self, socket) -> None:
        self._socket = socket
        self._last_id = 0
        # Events of the domains a caller enabled (e.g. Network), in arrival order; they arrive
        # interleaved with replies, so every call collects the ones it reads past.
        self.events: list[dict] = []

    def call(self, method: str, **params: Any) -> dict:
        self._last_id += 1
        message_id = self._last_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv(timeout=CDP_CALL_TIMEOUT_S))
            if reply.get("id") != message_id:
                if "method" in reply:
                    self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"chromium DevTools {method} failed: {reply['error']}")
            return reply.get("result", {})


def _wait_for_page_target(process: subprocess.Popen, user_data_dir: Path, stderr_log: Path) -> str:
    port_file = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + CHROMIUM_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with code {process.returncode} at start:\n{_tail(stderr_log)}")
        if port_file.is_file() and port_file.read_text().strip():
            port = int(port_file.read_text().splitlines()[0])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                    targets = json.load(response)
            except (urllib.error.URLError, OSError, ValueError):
                targets = []
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise RuntimeError(
        f"chromium did not open its DevTools port within {CHROMIUM_START_TIMEOUT_S} s:\n{_tail(stderr_log)}"
    )


# The stApp element reports the script run state and the server connection; the page is
# drawn once the run finished (or failed to compile) while connected, and no skeleton
# placeholders remain (they stand in for elements that are still arriving).
_FINISHED_SCRIPT_STATES = ("notRunning", "compilationError")
_RENDER_STATE_JS = """
(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const app = document.querySelector('[data-testid="stApp"]');
  return {
    scriptState: app ? app.getAttribute("data-test-script-state") : null,
    connectionState: app ? app.getAttribute("data-test-connection-state") : null,
    skeleton: !!document.querySelector('[data-testid="stAppSkeleton"], [data-testid="stSkeleton"]'),
    mainText: main ? main.innerText : "",
    title: document.title,
  };
})()
"""

# Centre of the first visible element matching the selector whose own text contains the
# wanted text (innermost match, so "Run" clicks the button, not the whole page).
_FIND_CLICK_TARGET_JS = """
((selector, wanted) => {
  const candidates = [...document.querySelectorAll(selector)].filter(el => {
    const rect = el.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0 && el.innerText && el.innerText.includes(wanted);
  });
  const innermost = candidates.filter(el => !candidates.some(other => other !== el && el.contains(other)));
  if (!innermost.length) return null;
  innermost[0].scrollIntoView({block: "center"});
  const rect = innermost[0].getBoundingClientRect();
  return {x: rect.left + rect.width / 2, y: rect.top + rect.height / 2};
})
"""


class BrowserPage:
    """One chromium tab on a Streamlit page; create it with :func:`open_page`."""

    def __init__(self, connection: _DevToolsConnection, url: str) -> None:
        self._connection = connection
        self.url = url

    def evaluate(self, expression: str) -> Any:
        result = self._connection.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_drawn(self, *, wait_ms: int = DEFAULT_WAIT_MS, settle_ms: int = DEFAULT_SETTLE_MS,
                   wait_for_text: str | None = None) -> None:
        """Return once Streamlit finished its script run and the page text stopped changing."""
        deadline = time.monotonic() + wait_ms / 1000
        last_text, stable_since, state = None, time.monotonic(), {}
        while time.monotonic() < deadline:
            state = self.evaluate(_RENDER_STATE_JS) or {}
            text = state.get("mainText", "")
            if text != last_text:
                last_text, stable_since = text, time.monotonic()
            drawn = (
                state.get("scriptState") in _FINISHED_SCRIPT_STATES
                and state.get("connectionState") == "CONNECTED"
                and not state.get("skeleton")
            )
            wanted = wait_for_text is None or wait_for_text in text or wait_for_text in state.get("title", "")
            if drawn and wanted and time.monotonic() - stable_since >= settle_ms / 1000:
                return
            time.sleep(0.2)
        shown = (last_text or "(nothing)")[:2000]
        if wait_for_text is not None:
            raise AssertionError(
                f"{wait_for_text!r} did not appear on {self.url} within {wait_ms} ms; the page shows:\n{shown}"
            )
        raise AssertionError(
            f"{self.url} was not drawn within {wait_ms} ms (script state {state.get('scriptState')!r}, "
            f"connection {state.get('connectionState')!r}); the page shows:\n{shown}"
        )

    def click(self, text: str, *, selector: str = "button, [role='tab'], summary, a", wait_ms: int = DEFAULT_WAIT_MS
              ) -> None:
        """Click the element showing ``text`` as a person would (real mouse events), then wait
        for the rerun it triggers to finish drawing."""
        point = self.evaluate(f"{_FIND_CLICK_TARGET_JS}({json.dumps(selector)}, {json.dumps(text)})")
        if point is None:
            raise AssertionError(f"no visible {selector!r} showing {text!r} on {self.url}")
        for event_type in ("mouseMoved", "mousePressed", "mouseReleased"):
            self._connection.call(
                "Input.dispatchMouseEvent", type=event_type, x=point["x"], y=point["y"], button="left", clickCount=1
            )
        # Give the click's rerun a moment to start, so waiting does not see the old page as drawn.
        start_deadline = time.monotonic() + 1.0
        while time.monotonic() < start_deadline:
            if (self.evaluate(_RENDER_STATE_JS) or {}).get("scriptState") == "running":
                break
            time.sleep(0.05)
        self.wait_drawn(wait_ms=wait_ms)

    def click_text(self, tag: str, text: str, *, exact: bool = False) -> bool:
        """DOM-click the first ``tag`` element whose text ends with (or, ``exact``, is) ``text``.

        Unlike :meth:`click` (real mouse events, then waits for the rerun to be drawn) this
        returns at once, for long runs the test polls for itself; a DOM click also reaches the
        element whatever Streamlit lays over the page. False when no such element is drawn (yet).
        """
        test = "t === want" if exact else "t.endsWith(want)"
        return bool(self.evaluate(f"""(() => {{
  const want = {json.dumps(text)};
  const el = [...document.querySelectorAll({json.dumps(tag)})].find(e => {{ const t = e.innerText.trim(); return {test}; }});
  if (!el) return false;
  el.click();
  return true;
}})()"""))

    def requested_urls(self) -> list[str]:
        """Every URL the page has requested so far (documents, scripts, images, fonts, XHR,
        websockets), from DevTools Network events; needs ``open_page(..., record_requests=True)``."""
        self.evaluate("0")  # a round trip, so events sent before now have been read
        urls = []
        for event in self._connection.events:
            if event["method"] == "Network.requestWillBeSent":
                urls.append(event["params"]["request"]["url"])
            elif event["method"] == "Network.webSocketCreated":
                urls.append(event["params"]["url"])
        return urls

    def text(self) -> str:
        """What the main area shows, as the browser lays it out (innerText)."""
        return (self.evaluate(_RENDER_STATE_JS) or {}).get("mainText", "")

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def scroll_main_to(self, pixels: int) -> None:
        # Streamlit scrolls its main section, not the window.
        self.evaluate(f"document.querySelector('[data-testid=\"stMain\"]').scrollTop = {int(pixels)}")
        time.sleep(0.3)

    def screenshot(self, out_png: str | os.PathLike[str]) -> Path:
        out_png = Path(out_png).resolve()
        out_png.parent.mkdir(parents=True, exist_ok=True)
        image = self._connection.call("Page.captureScreenshot", format="png")["data"]
        out_png.write_bytes(base64.b64decode(image))
        return out_png


@contextlib.contextmanager
def open_page(url: str, *, width: int = 1400, height: int = 1000, wait_ms: int = DEFAULT_WAIT_MS,
              settle_ms: int = DEFAULT_SETTLE_MS, wait_for_text: str | None = None,
              record_requests: bool = False) -> Iterator[BrowserPage]:
    """Start a fresh headless chromium, load ``url`` and yield the page once it is drawn.

    ``record_requests`` turns on DevTools network events before the page loads, so
    :meth:`BrowserPage.requested_urls` sees every request from the first one."""
    from websockets.sync.client import connect  # a streamlit dependency, so always installed

    chromium = require_chromium()
    # A fresh profile per page: a shared one would carry cache and local storage between
    # tests, and chromium refuses to share a profile between two running instances.
    user_data_dir = Path(tempfile.mkdtemp(prefix="battgen-chromium-"))
    stderr_log = user_data_dir.parent / f"{user_data_dir.name}.stderr"
    with stderr_log.open("wb") as stderr_handle:
        process = subprocess.Popen(
            [
                str(chromium),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",  # chromium picks a free port and writes it to the profile
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr_handle,
        )
    try:
        page_websocket_url = _wait_for_page_target(process, user_data_dir, stderr_log)
        with connect(page_websocket_url, max_size=None, proxy=None, open_timeout=CDP_CALL_TIMEOUT_S) as socket:
            connection = _DevToolsConnection(socket)
            connection.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            if record_requests:
                connection.call("Network.enable")
            connection.call("Page.navigate", url=url)
            page = BrowserPage(connection, url)
            page.wait_drawn(wait_ms=wait_ms, settle_ms=settle_ms, wait_for_text=wait_for_text)
            yield page
    finally:
        _stop(process)
        # Chromium's helper processes can still be writing to the profile as the main one
        # exits; retry briefly so no profile directory is left behind in /tmp.
        for _ in range(10):
            shutil.rmtree(user_data_dir, ignore_errors=True)
            if not user_data_dir.exists():
                break
            time.sleep(0.2)
        stderr_log.unlink(missing_ok=True)


def screenshot(url: str, out_png: str | os.PathLike[str], *, width: int = 1400, height: int = 1000,
               wait_ms: int = DEFAULT_WAIT_MS, wait_for_text: str | None = None) -> Path:
    """Save a PNG of ``url`` once the page is drawn (waiting at most ``wait_ms``)."""
    with open_page(url, width=width, height=height, wait_ms=wait_ms, wait_for_text=wait_for_text) as page:
        return page.screenshot(out_png)


def dump_dom(url: str, *, width: int = 1400, height: int = 1000, wait_ms: int = DEFAULT_WAIT_MS,
             wait_for_text: str | None = None) -> str:
    """The page's HTML once Streamlit has drawn it (waiting at most ``wait_ms``)."""
    with open_page(url, width=width, height=height, wait_ms=wait_ms, wait_for_text=wait_for_text) as page:
        return page.dom()


# --------------------------------------------------------------------------- reading a DOM


def visible_text(dom: str) -> str:
    """Rough text content of a dumped DOM: enough to assert on what a reader sees."""
    without_code = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", without_code))


def exception_blocks(dom: str) -> list[str]:
    """Text of each exception Streamlit rendered on the page (empty when the page is healthy)."""
    blocks = []
    for match in re.finditer(r'<div[^>]*(?:data-testid="stException"|class="[^"]*stException)[^>]*>', dom):
        blocks.append(visible_text(dom[match.start() : match.start() + 3000]).strip()[:600])
    return blocks
