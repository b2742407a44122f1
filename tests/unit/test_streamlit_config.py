"""The server settings the app ships with: bound where the README says, XSRF on, uploads bounded."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def server_config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]


def test_xsrf_and_cors_protection_are_on_explicitly():
    server = server_config()
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True


def test_uploads_are_bounded_and_the_readers_limit_is_not_below_it():
    from battgen.afm.formats.common import MAX_UPLOAD_BYTES

    limit_mb = server_config()["maxUploadSize"]
    assert 0 < limit_mb <= 200
    assert limit_mb * 1024 * 1024 <= MAX_UPLOAD_BYTES


def test_the_server_binds_where_the_readme_says():
    server = server_config()
    readme_urls = set(re.findall(r"<http://([\w.]+):(\d+)>", (REPO / "README.md").read_text()))
    assert readme_urls == {(server["address"], str(server["port"]))}
    assert server["address"] in ("localhost", "127.0.0.1")
