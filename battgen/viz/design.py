"""Design results on screen: the funnel with counts per arm, and computed vs requested properties.

Pure functions (counts and candidate records in, plotly figures out), so the Design page stays thin.
"""

from __future__ import annotations

import plotly.graph_objects as go

from battgen.data.properties import PROPERTY_BY_NAME

ARM_COLORS = {"guided": "#636EFA", "guided-prerelaxed": "#00CC96", "ion-exchange": "#EF553B"}
ARM_LABELS = {"guided": "guided (prior + surrogate)", "guided-prerelaxed": "guided, pre-relaxed (+ short CHGNet)",
              "ion-exchange": "ion exchange (baseline)"}


def funnel_figure(funnels: dict[str, dict], stage_labels: dict[str, str], height: int = 380) -> go.Figure:
    """One funnel per arm: how many proposals survive each stage, with the counts written on the bars."""
    fig = go.Figure()
    for arm, funnel in funnels.items():
        counts = funnel["counts"]
        stages = [s for s in stage_labels if s in counts]
        fig.add_trace(go.Funnel(
            name=ARM_LABELS.get(arm, arm), y=[stage_labels[s] for s in stages], x=[counts[s] for s in stages],
            textinfo="value+percent initial", marker_color=ARM_COLORS.get(arm),
        ))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), legend_orientation="h",
                      legend_y=1.08, funnelmode="group")
    return fig


def target_figure(records: list[dict], targets: dict[str, float], x: str = "capacity_grav",
                  y: str = "average_voltage", height: int = 380) -> go.Figure:
    """Verified candidates' computed properties around the request (a star), one colour per arm.

    A thin line joins each candidate's surrogate estimate (open circle) to its computed value, so
    the distance the pre-rank was off by is visible.
    """
    fig = go.Figure()
    for arm in sorted({r["arm"] for r in records}):
        mine = [r for r in records if r["arm"] == arm and r["computed"]]
        if not mine:
            continue
        color = ARM_COLORS.get(arm)
        fig.add_trace(go.Scatter(
            x=[r["computed"][x] for r in mine], y=[r["computed"][y] for r in mine], mode="markers",
            name=f"{ARM_LABELS.get(arm, arm)}: computed", marker=dict(size=11, color=color),
            text=[f"{r['formula_discharge']} · {r['id']}" for r in mine], hovertemplate="%{text}<extra></extra>"))
        estimated = [r for r in mine if x in r["estimated"] and y in r["estimated"]]
        if estimated:
            fig.add_trace(go.Scatter(
                x=[r["estimated"][x] for r in estimated], y=[r["estimated"][y] for r in estimated], mode="markers",
                name=f"{ARM_LABELS.get(arm, arm)}: estimated before relaxing",
                marker=dict(size=9, color=color, symbol="circle-open"), hoverinfo="skip"))
            for r in estimated:
                fig.add_trace(go.Scatter(x=[r["estimated"][x], r["computed"][x]], y=[r["estimated"][y], r["computed"][y]],
                                         mode="lines", line=dict(color=color, width=1, dash="dot"),
                                         showlegend=False, hoverinfo="skip"))
    if x in targets and y in targets:
        fig.add_trace(go.Scatter(x=[targets[x]], y=[targets[y]], mode="markers", name="requested",
                                 marker=dict(size=18, symbol="star", color="#FFD700", line=dict(width=1, color="#333"))))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), legend_orientation="h", legend_y=-0.2,
                      xaxis_title=PROPERTY_BY_NAME[x].axis_title, yaxis_title=PROPERTY_BY_NAME[y].axis_title)
    return fig
