"""AFM stacks, translated descriptors and composition predictions as plotly figures.

Pure functions (arrays in, Figure out) so the AFM page stays thin. Conventions follow the data:
stacks are (H, W, 10) with index 0 the farthest tip height; descriptors are (H, W, 6) with
channels height map, vdW spheres, atomic disks and the R, G, B type map, all in [−1, 1]. Row 0
is the lowest y of the scan, so every map is drawn with the origin at the bottom left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

GREY_DESCRIPTORS: tuple[str, ...] = ("Height map", "vdW spheres", "Atomic disks")
TYPE_MAP_TITLE = "Type map"
TYPE_MAP_LEGEND = "blue = working ion · green = H, N, O, F, Cl, noble gases · red = other elements"
STACK_COLORSCALE = "gray"
DESCRIPTOR_COLORSCALE = "gray"


def _check_maps(array: np.ndarray, channels: int, what: str) -> np.ndarray:
    array = np.asarray(array, np.float32)
    if array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(f"{what} must be (H, W, {channels}), got {array.shape}")
    return array


def _check_stack(stack: np.ndarray) -> np.ndarray:
    stack = np.asarray(stack, np.float32)
    if stack.ndim != 3 or stack.shape[2] < 1:
        raise ValueError(f"stack must be (H, W, heights), got {stack.shape}")
    return stack


def type_map_rgb(descriptors: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image of the type-map channels, [−1, 1] → [0, 255], black background."""
    rgb = np.clip((np.asarray(descriptors, np.float32)[..., 3:6] + 1.0) * 127.5, 0, 255)
    return rgb.astype(np.uint8)


def _heatmap(values: np.ndarray, *, colorscale: str, zmin: float = -1.0, zmax: float = 1.0,
             showscale: bool = False, hover: str = "x %{x}, y %{y}: %{z:.2f}") -> go.Heatmap:
    return go.Heatmap(z=values, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=showscale,
                      hovertemplate=hover + "<extra></extra>")


def _square_axes(fig: go.Figure, rows: int, cols: int) -> None:
    for i in range(1, rows * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"xaxis{suffix}": dict(visible=False, constrain="domain"),
                           f"yaxis{suffix}": dict(visible=False, scaleanchor=f"x{suffix}",
                                                  constrain="domain")})


def stack_figure(stack: np.ndarray, height_index: int, *, height: int = 380) -> go.Figure:
    """One frequency-shift map of the stack (index 0 = farthest from the sample)."""
    stack = _check_stack(stack)
    n = stack.shape[2]
    if not 0 <= height_index < n:
        raise ValueError(f"height index must be in 0..{n - 1}, got {height_index}")
    fig = go.Figure(_heatmap(stack[..., height_index], colorscale=STACK_COLORSCALE, showscale=True,
                             hover="x %{x}, y %{y}: Δf %{z:.2f} (scaled)"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0),
                      title=dict(text=f"Height {height_index + 1} of {n} "
                                      f"({'farthest' if height_index == 0 else 'closest' if height_index == n - 1 else 'between'})",
                                 font=dict(size=13)))
    _square_axes(fig, 1, 1)
    return fig


def stack_strip_figure(stack: np.ndarray, *, columns: int = 5, height: int = 300) -> go.Figure:
    """Every height of the stack as small multiples, farthest first."""
    stack = _check_stack(stack)
    n = stack.shape[2]
    rows = int(np.ceil(n / columns))
    fig = make_subplots(rows=rows, cols=columns, horizontal_spacing=0.01, vertical_spacing=0.06,
                        subplot_titles=[f"h{k + 1}" for k in range(n)])
    for k in range(n):
        fig.add_trace(_heatmap(stack[..., k], colorscale=STACK_COLORSCALE), row=k // columns + 1,
                      col=k % columns + 1)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=20, b=0))
    fig.update_annotations(font_size=11)
    _square_axes(fig, rows, columns)
    return fig


def descriptor_figure(predicted: np.ndarray, truth: np.ndarray | None = None, *,
                      height_per_row: int = 250) -> go.Figure:
    """Height map, vdW spheres, atomic disks and type map; a second row with the ground truth."""
    rows_data = [("predicted", _check_maps(predicted, 6, "descriptors"))]
    if truth is not None:
        rows_data.append(("simulated (truth)", _check_maps(truth, 6, "true descriptors")))
    titles = [f"{name} · {label}" for label, _ in rows_data for name in (*GREY_DESCRIPTORS, TYPE_MAP_TITLE)]
    fig = make_subplots(rows=len(rows_data), cols=4, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=0.08)
    for r, (_, maps) in enumerate(rows_data, start=1):
        for c in range(3):
            fig.add_trace(_heatmap(maps[..., c], colorscale=DESCRIPTOR_COLORSCALE), row=r, col=c + 1)
        # go.Image puts row 0 at the top; flip so it matches the heatmaps' bottom-left origin.
        fig.add_trace(go.Image(z=type_map_rgb(maps)[::-1], hoverinfo="skip"), row=r, col=4)
    fig.update_layout(height=height_per_row * len(rows_data) + 40, margin=dict(l=0, r=0, t=30, b=0))
    fig.update_annotations(font_size=12)
    _square_axes(fig, len(rows_data), 4)
    return fig


def composition_figure(elements: Sequence[tuple[str, float]], *, truth: dict[str, float] | None = None,
                       spread: dict[str, float] | None = None, k: int = 8, height: int = 300) -> go.Figure:
    """Predicted atom counts (bars) of the ``k`` largest predicted elements and of every true element,
    with the true counts as markers and, given ``spread`` (symbol -> count), error bars of ± that much.

    ``elements`` is (symbol, predicted count), largest first. A true element the model barely
    predicts must still show, at its small predicted count: leaving it off hides the miss.
    """
    predicted = dict(elements)
    symbols = [s for s, _ in elements[:k]]
    symbols += [s for s, n in (truth or {}).items() if n > 0 and s not in symbols]
    errors = None if spread is None else dict(type="data", array=[spread.get(s, 0.0) for s in symbols],
                                              color="#78909C", thickness=1.5)
    fig = go.Figure(go.Bar(x=symbols, y=[predicted.get(s, 0.0) for s in symbols], name="predicted",
                           marker_color="#1565C0", error_y=errors,
                           hovertemplate="%{x}: %{y:.2f} atoms<extra></extra>"))
    if truth:
        fig.add_trace(go.Scatter(x=symbols, y=[truth.get(s, 0.0) for s in symbols], mode="markers",
                                 name="true", marker=dict(color="#D32F2F", size=11, symbol="line-ew-open",
                                                          line=dict(width=3)),
                                 hovertemplate="%{x}: %{y:.2f} atoms (true)<extra></extra>"))
    # Room above the plot for the legend, so a true count above every bar is not drawn under it.
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white",
                      yaxis_title="atoms in the cluster", showlegend=bool(truth),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def count_violin_figure(true_counts: np.ndarray, predicted_counts: np.ndarray, ions: Sequence[str], *,
                        height: int = 380) -> go.Figure:
    """True vs predicted atom counts per working ion (every non-zero entry of the test split)."""
    true_counts, predicted_counts = np.asarray(true_counts), np.asarray(predicted_counts)
    ions = np.asarray(ions)
    fig = go.Figure()
    for label, values, side, colour in (("true", true_counts, "negative", "#546E7A"),
                                        ("predicted", predicted_counts, "positive", "#1565C0")):
        xs, ys = [], []
        for ion in dict.fromkeys(ions):
            mask = ions == ion
            present = true_counts[mask] > 0
            xs += [ion] * int(present.sum())
            ys += values[mask][present].tolist()
        fig.add_trace(go.Violin(x=xs, y=ys, name=label, side=side, line_color=colour, points=False,
                                spanmode="hard", meanline_visible=True))
    fig.update_layout(violinmode="overlay", height=height, template="plotly_white",
                      margin=dict(l=10, r=10, t=10, b=10), yaxis_title="atoms per element",
                      xaxis_title="working ion", legend=dict(orientation="h", y=1.08))
    return fig


def error_histogram_figure(true_counts: np.ndarray, predicted_counts: np.ndarray, *, height: int = 320) -> go.Figure:
    """Histogram of predicted − true atom counts over the elements present."""
    true_counts, predicted_counts = np.asarray(true_counts), np.asarray(predicted_counts)
    present = true_counts > 0
    errors = (predicted_counts - true_counts)[present]
    fig = go.Figure(go.Histogram(x=errors, nbinsx=60, marker_color="#1565C0"))
    fig.update_layout(height=height, template="plotly_white", margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="predicted − true atoms (elements present)", yaxis_title="count")
    return fig


def descriptors_png(descriptors: np.ndarray, *, scale: int = 4, gap: int = 4) -> bytes:
    """The four descriptors side by side as one PNG (height, vdW, disks, type map), upscaled."""
    import io

    from PIL import Image

    maps = _check_maps(descriptors, 6, "descriptors")
    grey = [np.clip((maps[..., c] + 1.0) * 127.5, 0, 255).astype(np.uint8) for c in range(3)]
    panels = [np.repeat(g[..., None], 3, axis=2) for g in grey] + [type_map_rgb(maps)]
    h, w = maps.shape[:2]
    sheet = np.full((h, 4 * w + 3 * gap, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        sheet[:, i * (w + gap): i * (w + gap) + w] = panel
    # Row 0 is the lowest y of the scan; images are stored top row first.
    image = Image.fromarray(sheet[::-1]).resize((sheet.shape[1] * scale, h * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
