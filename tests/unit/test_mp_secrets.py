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
