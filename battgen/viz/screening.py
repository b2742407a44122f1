"""Screening results as plotly figures and display tables: request vs candidates, sensitivity.

Pure functions (frames and dicts in, Figure or DataFrame out) so the Screening page stays thin.
Properties are compared in the [0, 1] units of the data range (the scaling the model is
conditioned in and ``property_match`` is measured in), because the six properties have units
that differ by three orders of magnitude; hover texts give the physical values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from battgen.data.properties import PROPERTIES, PROPERTY_NAMES, PropertyScaler
from battgen.viz.afm import descriptor_figure

REQUEST_COLOUR = "#212121"
CANDIDATE_COLOURS = ("#1565C0", "#2E7D32", "#EF6C00", "#6A1B9A", "#00838F", "#AD1457", "#558B2F", "#4E342E")
SENSITIVITY_COLOUR = "#1565C0"
ION_SWAP_COLOUR = "#9AA5B1"
REQUEST_LABEL = "request"
REQUEST_ROW_BACKGROUND = "rgba(120, 120, 120, 0.15)"


def generated_descriptor_figure(descriptors: np.ndarray, *, height: int = 210) -> go.Figure:
    """One generated sample's four descriptors, the AFM page's figure with short panel titles
    (there is no ground truth to tell apart, and a sample gets half the page width)."""
    fig = descriptor_figure(descriptors, height_per_row=height - 40)
    fig.for_each_annotation(lambda annotation: annotation.update(text=annotation.text.split(" · ")[0]))
    fig.update_layout(margin=dict(l=0, r=0, t=40, b=0))
    return fig


def property_comparison_figure(request: Mapping[str, float], candidates: pd.DataFrame, scaler: PropertyScaler, *,
                               top: int = 5, height: int = 340) -> go.Figure:
    """The request (black diamonds) and the top candidates' real properties, per property, in
    fractions of the data range (0 = lowest, 1 = highest electrode of the table)."""
    labels = [p.label for p in PROPERTIES]
    hover = "%{x}: %{text} (%{y:.2f} of the range)<extra>%{fullData.name}</extra>"

    def physical_text(values) -> list[str]:
        return [f"{value:.4g} {p.unit}" for value, p in zip(values, PROPERTIES)]

    fig = go.Figure()
    for i, (_, row) in enumerate(candidates.head(top).iterrows()):
        physical = row[list(PROPERTY_NAMES)].to_numpy(np.float64)
        fig.add_trace(go.Scatter(
            x=labels, y=scaler.transform(physical), mode="markers+lines", text=physical_text(physical),
            name=f"#{row['rank']} {row['formula_discharge']}", hovertemplate=hover,
            marker=dict(size=9, color=CANDIDATE_COLOURS[i % len(CANDIDATE_COLOURS)]), line=dict(width=1, dash="dot")))
    requested = [request[n] for n in PROPERTY_NAMES]
    fig.add_trace(go.Scatter(
        x=labels, y=scaler.transform(requested), mode="markers", name=REQUEST_LABEL, text=physical_text(requested),
        hovertemplate=hover, marker=dict(size=15, color=REQUEST_COLOUR, symbol="diamond-open", line=dict(width=3))))
    fig.update_layout(height=height, template="plotly_white", margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(title="position in the data range", range=[-0.05, 1.05]),
                      legend=dict(orientation="h", y=-0.15))
    return fig


def request_and_candidates(request: Mapping[str, float], working_ion: str,
                           candidate_table: pd.DataFrame) -> pd.DataFrame:
    """The candidate table with the request as its first row (no rank, no scores), to read across."""
    request_row = pd.DataFrame([{"id": REQUEST_LABEL, "working_ion": working_ion, "formula_discharge": "",
                                 "structure_type": "", **{n: float(request[n]) for n in PROPERTY_NAMES}}])
    table = pd.concat([request_row, candidate_table], ignore_index=True)[list(candidate_table.columns)]
    if "rank" in table.columns:
        table["rank"] = table["rank"].astype("Int64")  # the request row has none
    return table


def highlight_request_row(table: pd.DataFrame):
    """A Styler of :func:`request_and_candidates`' frame that shades the request row."""
    return table.style.apply(
        lambda row: [f"background-color: {REQUEST_ROW_BACKGROUND}" if row["id"] == REQUEST_LABEL else ""] * len(row),
        axis=1)


def sensitivity_figure(labels: Sequence[str], mean: Sequence[float], std: Sequence[float] | None = None, *,
                       height: int = 320) -> go.Figure:
    """Bars of relative sensitivity per condition (the properties sum to 1), error bars = std over seeds."""
    mean = np.asarray(mean, np.float64)
    error = None if std is None else dict(type="data", array=np.nan_to_num(np.asarray(std, np.float64)), visible=True)
    # The ion swap is a different kind of change, outside the properties' sum: drawn apart in grey.
    colours = [ION_SWAP_COLOUR if label == "Working ion" else SENSITIVITY_COLOUR for label in labels]
    fig = go.Figure(go.Bar(x=list(labels), y=mean, error_y=error, marker_color=colours,
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=height, template="plotly_white", margin=dict(l=10, r=10, t=10, b=10),
                      yaxis_title="relative sensitivity (properties sum to 1)")
    return fig


def headline_metrics(metrics: Mapping | None) -> dict[str, float | int]:
    """The numbers worth a glance from a screening checkpoint's metrics.json (absent ones left out)."""
    metrics = metrics or {}
    test = metrics.get("test") or {}
    evaluation = metrics.get("evaluation") or {}
    retrieval = evaluation.get("retrieval") or {}
    score_hits = retrieval.get("generation_rank_by_score") or {}
    baseline_hits = retrieval.get("baseline_nearest_by_properties") or {}
    composition = (evaluation.get("composition") or {}).get("overall") or {}
    shuffled = ((evaluation.get("composition_shuffled_condition_control") or {}).get("vs_condition_material") or {})
    descriptors = evaluation.get("descriptors") or {}
    candidates = {
        "best validation loss": metrics.get("best_val_loss"),
        "test loss": test.get("loss"),
        "test loss without condition": test.get("loss_unconditional"),
        "condition gain (loss drop from the condition)": test.get("condition_gain"),
        "epochs run": metrics.get("epochs_run"),
        "training materials": metrics.get("n_train"),
        "retrieval top-1 (rank by score)": score_hits.get("top1"),
        "retrieval top-5 (rank by score)": score_hits.get("top5"),
        "retrieval top-1, property-lookup baseline": baseline_hits.get("top1"),
        "composition MAE (atoms)": composition.get("mae"),
        "composition R²": composition.get("r2"),
        "composition MAE with shuffled conditions": shuffled.get("mae"),
        "descriptor SSIM, best of k": descriptors.get("ssim_best_of_k"),
    }
    return {k: v for k, v in candidates.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


GUIDANCE_SWEEP_COLUMNS = {
    "guidance_scale": "guidance",
    "composition_mae": "composition MAE (atoms)",
    "composition_r2": "composition R²",
    "condition_effect_mae": "condition effect (MAE drop)",
    "ssim_best_of_k": "SSIM best of k",
    "ssim_mean": "SSIM mean",
    "top1_score": "top-1 (score)",
    "top5_score": "top-5 (score)",
    "top1_property_match": "top-1 (property match)",
    "loo_jaccard_score": "leave-one-out element Jaccard",
    "generation_s": "generation (s)",
}

# The condition effect is a difference of MAEs around 0.001 atoms: three decimals would hide it.
GUIDANCE_SWEEP_FORMATS = {"guidance": "%.1f", "condition effect (MAE drop)": "%.4f", "generation (s)": "%.1f"}


def guidance_sweep_table(sweep: Mapping | None) -> pd.DataFrame:
    """The stored guidance sweep (``metrics.json``'s ``guidance_sweep``) as a table, one row per scale."""
    rows = (sweep or {}).get("rows") or []
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame[[c for c in GUIDANCE_SWEEP_COLUMNS if c in frame.columns]].sort_values("guidance_scale")
    return frame.rename(columns=GUIDANCE_SWEEP_COLUMNS).reset_index(drop=True)


def denoising_figure(table: pd.DataFrame, *, height: int = 340) -> go.Figure:
    """Clean-latent error against noise level: the U-Net with its own and a shuffled condition,
    and the constant mean latent, one panel per split (``eval.screening_report.denoising_table``)."""
    from plotly.subplots import make_subplots

    splits = [s for s in ("train", "test") if (table["split"] == s).any()]
    fig = make_subplots(rows=1, cols=max(len(splits), 1), subplot_titles=[f"{s} split" for s in splits],
                        shared_yaxes=True)
    styles = {"own_mse": ("own condition", "#1f77b4", "solid"),
              "shuffled_mse": ("another material's", "#ff7f0e", "dot"),
              "constant_mse": ("constant mean latent", "#7f7f7f", "dash")}
    for col, split in enumerate(splits, start=1):
        rows = table[table["split"] == split].sort_values("timestep")
        for column, (name, color, dash) in styles.items():
            fig.add_trace(go.Scatter(x=rows["timestep"].tolist(), y=rows[column].tolist(), name=name,
                                     legendgroup=column, showlegend=col == 1, mode="lines+markers",
                                     line=dict(color=color, dash=dash)), row=1, col=col)
        fig.update_xaxes(title_text="timestep (1000 = pure noise)", row=1, col=col)
    fig.update_yaxes(title_text="clean-latent MSE", row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig
