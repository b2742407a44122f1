"""The electrode table on screen: filtering, property distributions, pairwise plots, voltage profiles.

Pure functions (a DataFrame with the columns of ``battgen.data.table.COLUMNS`` in, a DataFrame or
a plotly Figure out), so the Structures page stays thin and everything here is unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from battgen.data.properties import PROPERTY_BY_NAME, WORKING_IONS

# One fixed colour per working ion (Plotly's 10-colour palette, one per ion), so Li is the
# same blue in every figure and whichever ions a filter leaves.
ION_COLORS: dict[str, str] = dict(zip(WORKING_IONS, (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A",
    "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
)))
SEARCHED_COLUMNS = ("formula_discharge", "formula_charge", "framework_formula", "id")
# Shown in every hover so a point can be traced back to its row.
HOVER_COLUMNS = ["id", "formula_discharge", "formula_charge", "working_ion"]
_HOVER_HEAD = "<b>%{customdata[1]}</b> ⇄ %{customdata[2]} (%{customdata[3]})<br>%{customdata[0]}"


# Decimals that match each property's precision: volts to 10 mV, capacities and energies whole.
PROPERTY_DECIMALS: dict[str, int] = {
    "average_voltage": 2, "capacity_grav": 0, "capacity_vol": 0,
    "energy_grav": 0, "energy_vol": 0, "max_delta_volume": 3,
}


# Columns beside the six properties that the figures can put on an axis.
STABILITY_TITLES: dict[str, str] = {
    "stability_discharge": "E_hull discharged (eV/atom)",
    "stability_charge": "E_hull charged (eV/atom)",
}
HULL_STATES = ("discharge", "charge", "both")


def axis_title(name: str) -> str:
    if name in STABILITY_TITLES:
        return STABILITY_TITLES[name]
    return PROPERTY_BY_NAME[name].axis_title


def format_property(name: str, value: float) -> str:
    return f"{value:,.{PROPERTY_DECIMALS.get(name, 3)}f}"


@dataclass(frozen=True)
class SliderRange:
    low: float
    high: float
    step: float
    format: str  # printf-style, as many decimals as the step needs


def slider_range(values: Iterable[float]) -> SliderRange:
    """Bounds and step of a range slider covering ``values``.

    The step is about a hundredth of the span, rounded to a power of ten, and the bounds are
    rounded outwards to it, so the slider's full range never drops the extreme rows.
    """
    series = pd.Series(list(values), dtype=float).dropna()
    if series.empty:
        return SliderRange(0.0, 1.0, 0.01, "%.2f")
    low, high = float(series.min()), float(series.max())
    span = high - low if high > low else max(abs(high), 1.0)
    step = 10.0 ** math.floor(math.log10(span / 100))
    digits = max(0, -math.floor(math.log10(step)))
    low = round(math.floor(low / step) * step, digits)
    high = round(math.ceil(high / step) * step, digits)
    if high <= low:
        high = round(low + step, digits)
    return SliderRange(low, high, step, f"%.{digits}f")


def filter_electrodes(df: pd.DataFrame, *, ions: Iterable[str] | None = None,
                      ranges: Mapping[str, tuple[float, float]] | None = None,
                      search: str = "", max_e_hull: float | None = None,
                      hull_state: str = "discharge") -> pd.DataFrame:
    """Rows with a working ion in ``ions`` (all when ``None``), every property inside its
    inclusive ``ranges`` entry, ``search`` (case-insensitive) in a formula or the id, and an
    energy above hull of at most ``max_e_hull`` in ``hull_state`` (discharge, charge or both;
    a row without E_hull does not pass a set maximum)."""
    if hull_state not in HULL_STATES:
        raise ValueError(f"hull_state must be one of {HULL_STATES}, got {hull_state!r}")
    keep = pd.Series(True, index=df.index)
    if max_e_hull is not None:
        states = ("discharge", "charge") if hull_state == "both" else (hull_state,)
        for state in states:
            keep &= df[f"stability_{state}"].astype(float) <= max_e_hull
    if ions is not None:
        keep &= df["working_ion"].isin(list(ions))
    for name, (low, high) in (ranges or {}).items():
        keep &= df[name].between(low, high)
    text = search.strip().lower()
    if text:
        matches = pd.Series(False, index=df.index)
        for column in SEARCHED_COLUMNS:
            matches |= df[column].astype(str).str.lower().str.contains(text, regex=False)
        keep &= matches
    return df[keep]


def _ions_present(df: pd.DataFrame) -> list[str]:
    present = set(df["working_ion"])
    return [ion for ion in WORKING_IONS if ion in present] + sorted(present - set(WORKING_IONS))


def _empty_figure(message: str, height: int) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def distribution_figure(df: pd.DataFrame, name: str, *, kind: str = "violin", height: int = 420) -> go.Figure:
    """One box or violin per working ion of property ``name``, every material a hoverable point."""
    if kind not in ("violin", "box"):
        raise ValueError(f"kind must be violin or box, got {kind!r}")
    if df.empty:
        return _empty_figure("No electrodes match the filters", height)
    hover = _HOVER_HEAD + f"<br>{axis_title(name)}: %{{y:.4g}}<extra></extra>"
    fig = go.Figure()
    for ion in _ions_present(df):
        rows = df[df["working_ion"] == ion]
        common = dict(x=rows["working_ion"], y=rows[name], name=f"{ion} ({len(rows)})",
                      customdata=rows[HOVER_COLUMNS].to_numpy(), hovertemplate=hover,
                      marker=dict(color=ION_COLORS.get(ion), size=5), line=dict(color=ION_COLORS.get(ion)))
        if kind == "violin":
            fig.add_trace(go.Violin(points="all", pointpos=0, jitter=0.4, box_visible=True,
                                    meanline_visible=False, spanmode="hard", **common))
        else:
            fig.add_trace(go.Box(boxpoints="all", pointpos=0, jitter=0.4, **common))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      template="plotly_white")
    fig.update_xaxes(title="working ion")
    fig.update_yaxes(title=axis_title(name))
    return fig


def pairwise_figure(df: pd.DataFrame, x: str = "average_voltage", y: str = "capacity_grav", *,
                    height: int = 460) -> go.Figure:
    """Property ``y`` against ``x``, coloured by working ion; hover names the formula and id."""
    if df.empty:
        return _empty_figure("No electrodes match the filters", height)
    hover = (_HOVER_HEAD + f"<br>{axis_title(x)}: %{{x:.4g}}<br>{axis_title(y)}: %{{y:.4g}}"
             "<extra></extra>")
    fig = go.Figure()
    for ion in _ions_present(df):
        rows = df[df["working_ion"] == ion]
        fig.add_trace(go.Scatter(
            x=rows[x], y=rows[y], mode="markers", name=ion,
            marker=dict(color=ION_COLORS.get(ion), size=8, opacity=0.8, line=dict(width=0.5, color="#333")),
            customdata=rows[HOVER_COLUMNS].to_numpy(), hovertemplate=hover,
        ))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), template="plotly_white",
                      legend=dict(title="working ion"))
    fig.update_xaxes(title=axis_title(x))
    fig.update_yaxes(title=axis_title(y))
    return fig


def stability_sentence(row) -> str:
    """One line on where a row's two phases sit relative to the hull, with their competing phases."""
    parts = []
    for state, label in (("discharge", "discharged"), ("charge", "charged")):
        value = row.get(f"stability_{state}")
        competing = row.get(f"competing_phases_{state}")
        if value is None or pd.isna(value):
            parts.append(f"{label}: no E_hull")
            continue
        text = f"{label} {float(value):.3f} eV/atom"
        if competing is not None and not pd.isna(competing):
            text += f" ({int(competing)} competing phase{'' if int(competing) == 1 else 's'})"
        parts.append(text)
    return "Energy above hull: " + "; ".join(parts) + "."


def histogram_figure(df: pd.DataFrame, name: str, *, bins: int = 40, height: int = 420) -> go.Figure:
    """Histogram of column ``name`` stacked by working ion (rows without a value left out)."""
    values = df[name].astype(float).dropna() if not df.empty else pd.Series(dtype=float)
    if values.empty:
        return _empty_figure("No electrode has a value here", height)
    low, high = float(values.min()), float(values.max())
    size = (high - low) / bins if high > low else 1.0
    fig = go.Figure()
    for ion in _ions_present(df.loc[values.index]):
        rows = values[df.loc[values.index, "working_ion"] == ion]
        fig.add_trace(go.Histogram(x=rows, name=f"{ion} ({len(rows)})", marker_color=ION_COLORS.get(ion),
                                   xbins=dict(start=low, end=high + size, size=size),
                                   hovertemplate=f"{ion}: %{{y}} electrodes<br>{axis_title(name)}: %{{x}}"
                                                 "<extra></extra>"))
    fig.update_layout(barmode="stack", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      template="plotly_white", legend=dict(title="working ion"))
    fig.update_xaxes(title=axis_title(name))
    fig.update_yaxes(title="electrodes")
    return fig


def voltage_profile_figure(electrode, *, label: str | None = None, height: int = 340) -> go.Figure:
    """Voltage against gravimetric capacity of a pymatgen ``InsertionElectrode`` (its plotter)."""
    from pymatgen.apps.battery.plotter import VoltageProfilePlotter

    plotter = VoltageProfilePlotter(xaxis="capacity_grav")
    plotter.add_electrode(electrode, label or electrode.framework_formula)
    fig = plotter.get_plotly_figure(height=height, font_dict=dict(size=13))
    # The plotter's defaults are for a standalone 800 px picture; fit it to a page column.
    fig.update_layout(width=None, title=None, showlegend=False, margin=dict(l=10, r=10, t=10, b=10))
    fig.update_traces(line=dict(width=3, color="#1565C0"))
    # Headroom above the highest plateau, which would otherwise sit on the plot's top edge.
    top = max((max(trace.y) for trace in fig.data if len(trace.y)), default=1.0)
    fig.update_yaxes(range=[0, 1.15 * max(top, 0.1)])
    return fig
