"""Start the web app: ``python -m battgen.ui.serve [streamlit options]`` is ``streamlit run app.py``
without a stray "Page not found" on deep links.

Streamlit treats a ``pages/`` folder beside the main script as an old-style multipage app
(MPA v1) until the first ``st.navigation`` call: the first script run of a fresh server
resolves the URL against the ``pages/<file>.py`` names, so a bookmark to one of the router's
paths (``/candidate-screening``) gets Streamlit's "Page not found" dialog before app.py's
router takes over and draws the right page (``_mpa_v1`` in
``streamlit/runtime/scriptrunner/script_runner.py``). Here the router in app.py is the only
navigation, so Streamlit is told so before it starts; ``streamlit run app.py`` still works,
with that dialog on the first deep link.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"


def main(argv: list[str] | None = None) -> None:
    from battgen.runtime import configure_threads

    configure_threads()  # inherited by the server process before torch is imported anywhere
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
