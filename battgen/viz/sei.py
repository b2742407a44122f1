"""Plotly figures of the SEI explorer: lattices, latent maps, parity plots, correlations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from battgen.sei.observables import UNITS
from battgen.sei.species import COLORS, ELECTRODE_COLOR, NAMES, N_SPECIES

PROPERTY_LABELS = {
    "inorganic_fraction": "Li2CO3 volume fraction",
    "organic_fraction": "organic volume fraction",
    "thickness": "thickness (nm)",
    "density": "density (µg/cm²)",
    "porosity": "porosity",
    "coverage": "electrode coverage",
}


def property_label(name: str) -> str:
    return PROPERTY_LABELS.get(name, f"{name} ({UNITS[name]})" if UNITS.get(name) else name)


def _discrete_colorscale() -> list:
    scale = []
    for code, colour in enumerate(COLORS + (ELECTRODE_COLOR,)):
        scale += [[code / (N_SPECIES + 1), colour], [(code + 1) / (N_SPECIES + 1), colour]]
    return scale


def _with_electrode(lattice: np.ndarray) -> np.ndarray:
    """Stack the electrode row under the lattice so pictures show what the SEI grows on."""
    electrode = np.full((1, lattice.shape[1]), N_SPECIES)
    return np.vstack([electrode, lattice])


def lattice_rgb(lattice: np.ndarray, scale: int = 6) -> np.ndarray:
    """(H·scale, W·scale, 3) uint8 picture, electrode at the bottom: cheap enough to redraw
    several times a second while a simulation runs."""
    palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in COLORS + (ELECTRODE_COLOR,)],
                       np.uint8)
    picture = palette[_with_electrode(np.asarray(lattice, int))[::-1]]
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


def lattice_trace(lattice: np.ndarray, *, showscale: bool = False) -> go.Heatmap:
    z = _with_electrode(np.asarray(lattice, int))
    names = np.array(list(NAMES) + ["electrode"])
    return go.Heatmap(
        z=z,
        zmin=-0.5 + 0.5,
        zmax=N_SPECIES + 1,
        colorscale=_discrete_colorscale(),
        showscale=showscale,
        customdata=names[z],
        hovertemplate="x %{x}, row %{y}: %{customdata}<extra></extra>",
        xgap=0,
        ygap=0,
    )


def _legend_traces(present: Sequence[int] | None = None) -> list[go.Scatter]:
    codes = range(N_SPECIES) if present is None else present
    traces = [
        go.Scatter(x=[None], y=[None], mode="markers", name=NAMES[c],
                   marker=dict(size=12, symbol="square", color=COLORS[c], line=dict(width=1, color="#999")))
        for c in codes
    ]
    traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="electrode",
                             marker=dict(size=12, symbol="square", color=ELECTRODE_COLOR)))
    return traces


def lattice_figure(lattice: np.ndarray, title: str = "", height: int = 560) -> go.Figure:
    """One lattice with the electrode at the bottom and a species legend."""
    fig = go.Figure([lattice_trace(lattice)] + _legend_traces())
    fig.update_layout(
        title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        legend=dict(orientation="h", x=0, y=-0.04, yanchor="top", font=dict(size=11)),
        plot_bgcolor="white",
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(title="row (nm from electrode)", showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain")
    return fig


def lattice_strip(lattices: Sequence[np.ndarray], titles: Sequence[str], height: int = 260) -> go.Figure:
    """Lattices side by side (PC walks, sweeps, interpolations)."""
    n = len(lattices)
    fig = make_subplots(rows=1, cols=n, subplot_titles=list(titles), horizontal_spacing=0.01)
    for i, lattice in enumerate(lattices):
        fig.add_trace(lattice_trace(lattice), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    for i in range(n):
        fig.update_yaxes(scaleanchor=f"x{i + 1 if i else ''}", row=1, col=i + 1)
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=40, b=5), showlegend=False)
    fig.update_annotations(font_size=11)
    return fig


def legend_html() -> str:
    """The species colour key as one line of HTML (a plotly legend cannot wrap in a strip)."""
    items = [(c, n) for c, n in zip(COLORS, NAMES)] + [(ELECTRODE_COLOR, "electrode")]
    spans = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:1.1em;white-space:nowrap">'
        f'<span style="width:0.9em;height:0.9em;background:{colour};border:1px solid #999;'
        f'display:inline-block;margin-right:0.35em"></span>{name}</span>'
        for colour, name in items
    )
    return f'<div style="font-size:0.85em;line-height:1.8">{spans}</div>'


def latent_scatter(pcs: np.ndarray, values: np.ndarray, name: str, title: str,
                   explained: np.ndarray | None = None, height: int = 420) -> go.Figure:
    """Test latents on PC1-PC2, coloured by a property."""
    fig = go.Figure(go.Scattergl(
        x=pcs[:, 0], y=pcs[:, 1], mode="markers",
        marker=dict(size=5, color=values, colorscale="Viridis", showscale=True,
                    colorbar=dict(title=property_label(name), thickness=12)),
        hovertemplate="PC1 %{x:.2f}<br>PC2 %{y:.2f}<br>" + name + " %{marker.color:.3f}<extra></extra>",
    ))
    ev = explained if explained is not None else [np.nan, np.nan]
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_xaxes(title=f"PC1 ({ev[0]:.0%} of variance)")
    fig.update_yaxes(title=f"PC2 ({ev[1]:.0%} of variance)")
    return fig


def parity_figure(true: np.ndarray, pred: np.ndarray, names: Sequence[str],
                  r2: Sequence[float | None]) -> go.Figure:
    """True vs predicted per property, with the identity line and R²."""
    n = len(names)
    titles = [f"{property_label(nm)} — R² {v:.3f}" if v is not None else property_label(nm)
              for nm, v in zip(names, r2)]
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.06)
    for i in range(n):
        lo = float(min(true[:, i].min(), pred[:, i].min()))
        hi = float(max(true[:, i].max(), pred[:, i].max()))
        fig.add_trace(go.Scattergl(x=true[:, i], y=pred[:, i], mode="markers",
                                   marker=dict(size=4, opacity=0.6, color="#1565C0"),
                                   showlegend=False), row=1, col=i + 1)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines",
                                 line=dict(color="#888", dash="dash"), showlegend=False),
                      row=1, col=i + 1)
        fig.update_xaxes(title="simulated", row=1, col=i + 1)
    fig.update_yaxes(title="predicted", row=1, col=1)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font_size=11)
    return fig


def correlation_figure(matrix: np.ndarray, names: Sequence[str]) -> go.Figure:
    labels = [property_label(n) for n in names]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
        text=np.round(matrix, 2), texttemplate="%{text}", colorbar=dict(title="Pearson r"),
    ))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def event_count_figure(counts: np.ndarray, descriptions: Sequence[str]) -> go.Figure:
    labels = [f"{i + 1}. {d.split(':')[0]}" for i, d in enumerate(descriptions)]
    fig = go.Figure(go.Bar(x=np.maximum(counts, 0.5), y=labels, orientation="h",
                           marker_color="#1565C0", text=[f"{int(c):,}" for c in counts],
                           textposition="outside"))
    fig.update_xaxes(type="log", title="events executed")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(height=560, margin=dict(l=10, r=40, t=10, b=10))
    return fig
