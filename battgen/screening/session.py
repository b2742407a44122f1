"""Everything a screening run needs, loaded once: pipeline, electrode table, ranges, latent index.

The page caches one :class:`ScreeningSession` (``st.cache_resource``), the CLI builds one per
process; both then call :meth:`ScreeningSession.screen` per request, so moving a slider never
reloads a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from battgen import paths
from battgen.data.properties import PropertyScaler
from battgen.screening.candidates import ScreeningResult, screen
from battgen.screening.request import ScreeningRequest

# Relative to an artifact root (battgen.paths), so the page, the CLI and tests can point anywhere.
SCREENING_DIR = Path(paths.CHECKPOINTS, paths.SCREENING)
TRANSLATOR_DIR = Path(paths.CHECKPOINTS, paths.TRANSLATOR)
TABLE_DIR = Path(paths.ASSETS, paths.ELECTRODES)


def missing_screening_model(root: str | Path) -> str | None:
    """Why no screening is possible under ``root`` (None when the checkpoint is there)."""
    path = Path(root) / SCREENING_DIR
    if not (path / "model_index.json").is_file():
        return (f"No screening model in `{path}`. Train one with `python -m battgen train screening "
                "--latents checkpoints/translator/latents.npz` (after the translator and atom regressor).")
    return None


def training_targets(checkpoint: str | Path) -> str:
    """What the screening model was trained to generate: every view ("all"), one "canonical" view
    or the per-material "mean" latent (its metadata; "all" for checkpoints that do not say)."""
    from battgen.artifacts import read_metadata

    try:
        meta = read_metadata(checkpoint) or {}
    except ValueError:  # a corrupt metadata file does not stop screening; the index stays per view
        return "all"
    return str((meta.get("config") or {}).get("targets") or "all")


@dataclass
class ScreeningSession:
    pipeline: object  # BattGenScreeningPipeline
    table: pd.DataFrame
    scaler: PropertyScaler
    latent_index: object | None  # LatentIndex, None when the translator's latents are absent
    targets: str = "all"  # what the model generates: a view ("all", "canonical") or a material's "mean" latent

    @classmethod
    def load(cls, root: str | Path, device=None) -> "ScreeningSession":
        """Load from an artifact root (repo checkout); ValueError with a clear reason when incomplete."""
        from battgen.afm.translate import LatentIndex
        from battgen.data.table import load_scaler, load_table
        from battgen.device import get_device
        from battgen.models.screening import BattGenScreeningPipeline

        root = Path(root)
        problem = missing_screening_model(root)
        if problem:
            raise ValueError(problem)
        table = load_table(root / TABLE_DIR)
        scaler = load_scaler(root / TABLE_DIR)
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # "Loading pipeline components" is noise on a CLI's stderr
        pipeline = BattGenScreeningPipeline.from_pretrained(root / SCREENING_DIR)
        pipeline.to(device or get_device())
        pipeline.set_progress_bar_config(disable=True)
        latents = root / TRANSLATOR_DIR / "latents.npz"
        index = LatentIndex.load(latents, list(table["id"])) if latents.is_file() else None
        targets = training_targets(root / SCREENING_DIR)
        if index is not None and targets == "mean":
            index = index.per_material_mean()
        session = cls(pipeline, table, scaler, index, targets)
        session.warm_up()
        return session

    def warm_up(self) -> None:
        """One tiny request, so the first one a person makes is not the one paying for
        first-call allocations and lazy imports (measured: 3 s instead of 0.5 s)."""
        ion = self.pipeline.config.working_ions[0]
        self.screen(self.request(ion), num_candidates=1, num_inference_steps=1)

    def with_table(self, table: pd.DataFrame) -> "ScreeningSession":
        """The same model ranking another table's electrodes (e.g. fetched from the Materials Project).

        The model's own property ranges stay (its conditions are scaled by them); the latent index
        covers only the materials the translator saw, so it is dropped.
        """
        from dataclasses import replace

        return replace(self, table=table, latent_index=None)

    def request(self, ion: str, given: dict | None = None) -> ScreeningRequest:
        return ScreeningRequest.build(self.table, self.scaler, ion, given)

    def screen(self, request: ScreeningRequest, **kwargs) -> ScreeningResult:
        return screen(self.pipeline, self.table, self.scaler, request, latent_index=self.latent_index, **kwargs)
