"""Where BattGen's artifacts live: the one place that knows the folder layout.

Every page, command and trainer asks here instead of spelling ``checkpoints/...`` itself, so a
results folder laid out like the repository can be browsed by setting one environment variable,
``BATTGEN_ARTIFACT_ROOT``, and a layout change is one edit.

::

    <artifact root>/
      checkpoints/<model>/     trained models (``save_pretrained`` folders, metrics.json, metadata.json)
      assets/<dataset>/        shipped datasets (electrode table, AFM examples, SEI dataset, designs)
      data/<dataset>/          datasets you build (git-ignored; too large to ship)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_ROOT_ENV_VAR = "BATTGEN_ARTIFACT_ROOT"

CHECKPOINTS = "checkpoints"
ASSETS = "assets"
DATA = "data"

# Shipped checkpoints (folders under checkpoints/).
TRANSLATOR = "translator"
TRANSLATOR_NOADV = "translator_noadv"
# The translator before the robust encoder: the robust encoder's teacher, kept so that the shipped
# encoder can be retrained from it (retraining from the shipped encoder would teach it itself).
TRANSLATOR_TEACHER = "translator_teacher"
ATOM_REGRESSOR = "atom_regressor"
SCREENING = "screening"
SEI_VAE = "sei_vae"
SEI_PRVAE = "sei_prvae"
SEI_CPRVAE = "sei_cprvae"

# Datasets (folders under assets/ when shipped, under data/ when built locally).
ELECTRODES = "electrodes"
AFM = "afm"
SEI = "sei"
DESIGN = "design"


def artifact_root() -> Path:
    """The folder holding checkpoints/, assets/ and data/: ``$BATTGEN_ARTIFACT_ROOT`` or the checkout."""
    return Path(os.environ.get(ARTIFACT_ROOT_ENV_VAR) or REPO_ROOT)


def checkpoint_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or artifact_root()) / CHECKPOINTS / name


def asset_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or artifact_root()) / ASSETS / name


def data_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or artifact_root()) / DATA / name


def for_display(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the checkout when it lies inside it, as typed on a command line.

    Recorded commands (metadata.json) and messages stay the same on every machine.
    """
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


# The app's icon, served by Streamlit itself: an emoji or Material icon would be fetched from an
# internet font/emoji server on every page load, which fails offline.
FAVICON = REPO_ROOT / ASSETS / "brand" / "favicon.png"
