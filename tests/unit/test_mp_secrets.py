"""The Materials Project API key goes to MP's server and nowhere else.

Each test runs a fetch with a fake key and then searches everything the run produced for it:
stdout and stderr, every log record at DEBUG level from every logger, the exception (message,
repr, the formatted traceback and every exception chained to it, whether printed or not) and
every file written. The fetches are offline: the real mp-api client aimed at a closed loopback
port, or the real emmet-core documents of ``test_mp_fetch`` standing in for MP's reply.
"""

from __future__ import annotations

import functools
import logging
import traceback

import pytest

from tests.unit.test_mp_fetch import SENTINEL_KEY, _mp_error, _searcher, docs  # noqa: F401 (docs: fixture)

# Nothing listens on the discard port of the loopback interface: the client fails at once, and no
# request leaves the machine.
CLOSED_ENDPOINT = "http://127.0.0.1:9/"


def exception_texts(exc: BaseException) -> list[str]:
    """What any printer, logger or error reporter could show of ``exc``: every exception reachable
    through ``__cause__`` and ``__context__`` (suppressed or not), each as text, repr and traceback."""
    texts, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), "".join(traceback.format_exception(type(e), e, e.__traceback__))]
        todo += [e.__cause__, e.__context__]
    return texts


@pytest.fixture
def outputs(monkeypatch, caplog, capfd, tmp_path):
    """The key in the environment, every logger at DEBUG, and a check over all outputs."""
    monkeypatch.setenv("MP_API_KEY", SENTINEL_KEY)
    caplog.set_level(logging.DEBUG)

    def assert_key_nowhere(*extra: str) -> None:
        captured = capfd.readouterr()
        logs = [caplog.text, *(r.getMessage() for r in caplog.records),
                *(repr(r.args) for r in caplog.records)]
        for where, text in [("stdout", captured.out), ("stderr", captured.err), *(("log", t) for t in logs),
                            *(("exception", t) for t in extra)]:
            assert SENTINEL_KEY not in text, f"the key appears in {where}: {text[:500]}"
        files = [f for f in tmp_path.rglob("*") if f.is_file()]
        for file in files:
            assert SENTINEL_KEY.encode() not in file.read_bytes(), f"the key appears in {file}"
        return captured, files

    return assert_key_nowhere


def test_the_real_client_offline_leaks_the_key_nowhere(outputs, monkeypatch, tmp_path):
    import battgen.data.mp_fetch as mp_fetch
    from battgen.cli import main

    monkeypatch.setenv("MP_API_ENDPOINT", CLOSED_ENDPOINT)
    with pytest.raises(ValueError, match="cannot reach Materials Project") as info:
        mp_fetch.fetch_mp(tmp_path / "direct", ions=("Li",), progress=False, sleep=lambda s: None, attempts=2)
    outputs(*exception_texts(info.value))

    # The command line, as a user runs it (back-off shortened: the failure is the same each time).
    monkeypatch.setattr(mp_fetch, "fetch_mp", functools.partial(mp_fetch.fetch_mp, sleep=lambda s: None,
                                                                attempts=2))
    assert main(["data", "fetch-mp", "--out", str(tmp_path / "cli"), "--ions", "Li"]) == 2
    captured, _ = outputs()
    assert "\nerror: cannot reach Materials Project" in "\n" + captured.err


@pytest.mark.parametrize("reply", [
    "REST query returned with error status code 401 on URL https://api.materialsproject.org/x?k={key} "
    "with message:\nbad key {key}",
    "REST query returned with error status code 500 on URL x with message: {key}",
    "REST query returned with error status code 418 on URL x: teapot says {key}",
    "HTTPSConnectionPool: Max retries exceeded (Caused by ResponseError('x-api-key {key}'))",
])
def test_a_server_echoing_the_key_in_its_error_leaks_it_nowhere(outputs, tmp_path, reply):
    from battgen.data.mp_fetch import fetch_mp

    def echo(ion):
        raise _mp_error(reply.format(key=SENTINEL_KEY))

    with pytest.raises(ValueError) as info:
        fetch_mp(tmp_path, ions=("Li",), progress=False, search=echo, sleep=lambda s: None, attempts=2)
    outputs(*exception_texts(info.value))


def test_a_successful_fetch_writes_and_logs_no_key(outputs, docs, monkeypatch, tmp_path):  # noqa: F811
    import battgen.data.mp_fetch as mp_fetch
    from battgen.cli import main

    monkeypatch.setattr(mp_fetch, "mp_searcher", lambda api_key: _searcher(docs))
    assert main(["data", "fetch-mp", "--out", str(tmp_path), "--ions", "Li,Na"]) == 0
    _, files = outputs()
    assert {"electrodes.parquet", "metadata.json", "metrics.json", "rejected.csv"} <= {f.name for f in files}


# --------------------------------------------------------------------------- the Structures page panel

PANEL_KEY = "PASTEDkey9876543210zyxwvuZYXWVUT"  # what the person pastes; the environment holds another


def _structures_page(tmp_path, monkeypatch):
    """The Structures page over an artifact root holding only the shipped table."""
    import shutil
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "assets" / "electrodes", tmp_path / "assets" / "electrodes")
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path))
    app = AppTest.from_file(str(repo / "pages" / "structure_browser.py"), default_timeout=240).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _shown_texts(app) -> list[str]:
    """Every text the page shows (the password field itself aside)."""
    texts = []
    for kind in ("markdown", "caption", "error", "info", "success", "warning", "exception", "subheader",
                 "title", "metric", "code"):
        for element in app.get(kind):
            texts.append(str(getattr(element, "value", "")) + str(getattr(element, "label", "")))
    return texts


def _paste_and_fetch(app, ions=("Li", "Na")):
    app.text_input(key="mp_api_key").input(PANEL_KEY)
    app.multiselect(key="mp_ions").set_value(list(ions))
    app.run()
    app.button(key="mp_fetch").click()
    return app.run()


def test_the_panel_offline_says_so_in_one_line_and_leaks_the_pasted_key_nowhere(outputs, monkeypatch, tmp_path):
    monkeypatch.setenv("MP_API_ENDPOINT", CLOSED_ENDPOINT)
    import battgen.data.mp_fetch as mp_fetch

    real_fetch = mp_fetch.fetch_mp
    monkeypatch.setattr(mp_fetch, "fetch_mp", lambda *a, **k: real_fetch(*a, **{**k, "sleep": lambda s: None}))
    app = _paste_and_fetch(_structures_page(tmp_path, monkeypatch))
    assert not app.exception, [e.value for e in app.exception]
    assert [e.value for e in app.error] == [e.value for e in app.error if "cannot reach Materials Project" in e.value]
    assert len(app.error) == 1 and "\n" not in app.error[0].value
    assert app.radio(key="table_source").value == "BattGen computed"
    for text in _shown_texts(app):
        assert PANEL_KEY not in text and SENTINEL_KEY not in text, text[:300]
    outputs()
    captured_files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert all(PANEL_KEY.encode() not in f.read_bytes() for f in captured_files)


def test_the_panel_fetches_with_the_pasted_key_into_a_table_beside_ours(outputs, docs, monkeypatch,  # noqa: F811
                                                                      tmp_path):
    import battgen.data.mp_fetch as mp_fetch

    used = []
    monkeypatch.setattr(mp_fetch, "mp_searcher", lambda api_key: used.append(api_key) or _searcher(docs))
    app = _paste_and_fetch(_structures_page(tmp_path, monkeypatch))
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert used == [PANEL_KEY]  # the pasted key, not the environment's
    assert any("Fetched 3 electrodes" in s.value for s in app.success)
    assert app.radio(key="table_source").value == "Materials Project"
    assert any("**3** of 3 electrodes" in m.value for m in app.markdown)
    assert (tmp_path / "data" / "electrodes" / "mp" / "electrodes.parquet").is_file()
    assert (tmp_path / "assets" / "electrodes" / "electrodes.parquet").is_file()  # ours untouched
    for text in _shown_texts(app):
        assert PANEL_KEY not in text, text[:300]
    outputs()
    assert all(PANEL_KEY.encode() not in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())

    app.radio(key="table_source").set_value("BattGen computed")
    app.run()
    assert not app.exception
    from battgen.data.table import load_table

    ours = len(load_table(tmp_path / "assets" / "electrodes"))
    assert any(f"**{ours:,}** of {ours:,} electrodes" in m.value for m in app.markdown)


def test_a_rejected_pasted_key_is_one_line_that_points_at_the_pasted_key(outputs, monkeypatch, tmp_path):
    import battgen.data.mp_fetch as mp_fetch

    def refuse(api_key):
        def search(ion):
            raise _mp_error(f"REST query returned with error status code 401 on URL x?k={api_key}")
        return search

    monkeypatch.setattr(mp_fetch, "mp_searcher", refuse)
    app = _paste_and_fetch(_structures_page(tmp_path, monkeypatch))
    assert [e.value for e in app.error] == [
        "Materials Project rejected the API key (HTTP 401); check the key you pasted"]
    for text in _shown_texts(app):
        assert PANEL_KEY not in text
    outputs()
