"""Files in every AFM upload format, for the reader tests and the AFM page tests.

Fixture files are produced by independent writers wherever one exists (``np.save``/``np.savez``,
``tifffile.imwrite``, ``gwyfile``); Nanonis ``.3ds``/``.sxm`` files are written here from the
documented layout (text header, end tag, big-endian float32 data), never by the reader's code.

Most stacks are linear in (row, column, height) (:func:`linear_stack`): bilinear resampling and
linear height interpolation reproduce a linear function exactly, so the expected output —
including its orientation — can be computed in closed form.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import tifffile
from gwyfile.objects import GwyContainer, GwyDataField, GwyObject, GwySIUnit


def linear_stack(h: int, w: int, z: int, *, a: float = 1.0, b: float = 0.5, c: float = 10.0) -> np.ndarray:
    """H×W×Z stack with value a·row + b·col + c·height_index."""
    y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(z), indexing="ij")
    return (a * y + b * x + c * k).astype(np.float64)


def npy_bytes(array: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def npy_header_only(shape: tuple[int, ...], descr: str) -> bytes:
    """A valid .npy header for ``shape`` followed by a few bytes: a forged, truncated file."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\x00" * 64


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def tiff_bytes(pages: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    kwargs.setdefault("photometric", "minisblack")
    tifffile.imwrite(buf, pages, **kwargs)
    return buf.getvalue()


# --------------------------------------------------------------------------- Nanonis writers


DF_CHANNEL = "OC M1 Freq. Shift (Hz)"


def write_3ds(
    cube: np.ndarray,
    *,
    z_start: float,
    z_end: float,
    channels: Sequence[str] = ("Current (A)", DF_CHANNEL),
    df_index: int = 1,
    sweep: str = "Z (m)",
    experiment_size: int | None = None,
    extra_header: str = "",
) -> bytes:
    """Nanonis grid-spectroscopy file: 'key=value' header lines ending with :HEADER_END:, then per
    pixel (rows of NX pixels, NY rows) the fixed + experiment parameters followed by each
    channel's sweep, all big-endian float32. ``cube`` (NY, NX, points) goes into channel
    ``df_index``; the other channels hold a distinct constant."""
    ny, nx, points = cube.shape
    experiment = (
        "X (m);Y (m);Z (m);Z offset (m);Settling time (s);Integration time (s);Z-Ctrl hold;Final Z (m)"
    )
    n_params = 2 + len(experiment.split(";"))
    size = points * len(channels) * 4 if experiment_size is None else experiment_size
    header = (
        f'Grid dim="{nx} x {ny}"\r\n'
        "Grid settings=0.000000E+0;0.000000E+0;1.000000E-8;1.000000E-8;0.000000E+0\r\n"
        "Filetype=Linear\r\n"
        f'Sweep Signal="{sweep}"\r\n'
        'Fixed parameters="Sweep Start;Sweep End"\r\n'
        f'Experiment parameters="{experiment}"\r\n'
        f"# Parameters (4 byte)={n_params}\r\n"
        f"Experiment size (bytes)={size}\r\n"
        f"Points={points}\r\n"
        f'Channels="{";".join(channels)}"\r\n'
        "Delay before measuring (s)=0.000000E+0\r\n"
        'Experiment="Grid Spectroscopy"\r\n'
        'Start time="01.02.2024 10:00:00"\r\n'
        'End time="01.02.2024 11:00:00"\r\n'
        "User=\r\n"
        "Comment=\r\n"
        f"{extra_header}"
        ":HEADER_END:\r\n"
    ).encode("latin-1")
    pixel = np.empty((ny, nx, n_params + points * len(channels)), dtype=">f4")
    pixel[:, :, 0] = z_start
    pixel[:, :, 1] = z_end
    pixel[:, :, 2:n_params] = 0.0
    for i in range(len(channels)):
        block = slice(n_params + i * points, n_params + (i + 1) * points)
        pixel[:, :, block] = cube if i == df_index else 1e-12 * (i + 1)
    return header + pixel.tobytes()


def write_sxm(
    maps: dict[str, np.ndarray],
    *,
    z: float | None = None,
    scan_dir: str = "down",
    directions: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
) -> bytes:
    """Nanonis scan: ':SECTION:' header lines, :SCANIT_END:, three newlines, 1A 04, then per
    channel (DATA_INFO order) the forward frame and, for 'both', the backward frame (recorded right
    to left), each NY rows of NX big-endian float32. ``maps`` are in storage order; ``units`` gives
    a channel's Unit column (default Hz)."""
    directions = directions or {}
    units = units or {}
    ny, nx = next(iter(maps.values())).shape
    lines = [
        ":NANONIS_VERSION:", "2",
        ":SCANIT_TYPE:", "              FLOAT            MSBFIRST",
        ":REC_DATE:", "01.02.2024",
        ":REC_TIME:", "10:00:00",
        ":SCAN_PIXELS:", f"{nx:>10d}{ny:>10d}",
        ":SCAN_RANGE:", "           1.000000E-8           1.000000E-8",
        ":SCAN_OFFSET:", "           0.000000E+0           0.000000E+0",
        ":SCAN_TIME:", "             1.280E+1             1.280E+1",
        ":SCAN_ANGLE:", "            0.000E+0",
        ":SCAN_DIR:", scan_dir,
        ":BIAS:", "0.000E+0",
        ":ACQ_TIME:", "1638.4",
    ]
    if z is not None:
        lines += [":Z-Controller>Z (m):", f"{z:.6E}"]
    lines += [":DATA_INFO:", "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset"]
    frames: list[np.ndarray] = []
    for number, (name, values) in enumerate(maps.items()):
        direction = directions.get(name, "both")
        lines.append(f"\t{number}\t{name}\t{units.get(name, 'Hz')}\t{direction}\t1.000E+0\t0.000E+0")
        if direction in ("both", "forward"):
            frames.append(values)
        if direction in ("both", "backward"):
            frames.append(values[:, ::-1])
    # Real files end the header with ":SCANIT_END:" and three newlines (0A 0A 0A), then 1A 04.
    lines += ["", ":SCANIT_END:", "", "", ""]
    header = "\n".join(lines).encode("latin-1")
    return header + b"\x1a\x04" + b"".join(np.asarray(f, dtype=">f4").tobytes() for f in frames)


def sxm_series(
    zs: Sequence[float], h: int = 24, w: int = 20, **kwargs: object
) -> list[tuple[str, bytes, np.ndarray]]:
    """One scan per Z with Δf = row + 0.5·col + 1e10·Z (so larger Z = larger value)."""
    out = []
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i, z in enumerate(zs):
        df = (y + 0.5 * x + 1e10 * z).astype(np.float32)
        other = np.full((h, w), 3.0, dtype=np.float32)
        out.append((f"scan_{i:03d}.sxm", write_sxm({"Z": other, "OC_M1_Freq._Shift": df}, z=z, **kwargs), df))
    return out


# --------------------------------------------------------------------------- Gwyddion writers


def gwy_bytes(container: GwyContainer) -> bytes:
    buf = io.BytesIO()
    container.tofile(buf)
    return buf.getvalue()


def gwy_channels(maps: Sequence[np.ndarray], titles: Sequence[str | None] | None = None,
                 units: Sequence[str] | None = None, size_m: float = 1e-8) -> bytes:
    """Image channels /0/data, /1/data, … with titles (None: no title) and value units (si_unit_z)."""
    container = GwyContainer()
    for i, m in enumerate(maps):
        field = GwyDataField(np.ascontiguousarray(m, dtype=np.float64), xreal=size_m, yreal=size_m,
                             si_unit_xy="m", si_unit_z="Hz" if units is None else units[i])
        container[f"/{i}/data"] = field
        title = f"df z{i}" if titles is None else titles[i]
        if title is not None:
            container[f"/{i}/data/title"] = title
    return gwy_bytes(container)


# The channels of a real tapping-mode AFM file (issue 16): one scan, four quantities.
TOPOGRAPHY_CHANNELS = (("HeightRetrace", "m"), ("AmplitudeRetrace", "m"), ("DeflectionRetrace", "m"),
                       ("PhaseRetrace", "deg"))


def gwy_topography_scan(side: int = 256, size_m: float = 5e-6, seed: int = 0) -> bytes:
    """A Gwyddion file laid out like an AFM's tapping-mode scan: HeightRetrace [m], AmplitudeRetrace [m],
    DeflectionRetrace [m], PhaseRetrace [deg], ``side``×``side`` pixels over ``size_m``, with values
    of the sizes such a scan has (nm heights on a tilted plane, sub-nm amplitude error, degrees of phase)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    grains = np.sin(9 * x) * np.cos(7 * y)
    height = 20e-9 * (0.3 * x + 0.1 * y) + 3e-9 * grains + 0.2e-9 * rng.normal(size=x.shape)
    amplitude = 0.5e-9 * np.gradient(grains, axis=1) * side / 9 + 0.05e-9 * rng.normal(size=x.shape)
    deflection = 0.1e-9 * np.gradient(grains, axis=0) * side / 7 + 0.02e-9 * rng.normal(size=x.shape)
    phase = 80.0 + 4.0 * grains + 0.3 * rng.normal(size=x.shape)
    maps = (height, amplitude, deflection, phase)
    return gwy_channels(maps, titles=[t for t, _ in TOPOGRAPHY_CHANNELS], units=[u for _, u in TOPOGRAPHY_CHANNELS],
                        size_m=size_m)


def gwy_brick(
    cube_zyx: np.ndarray, key: str = "/brick/0", extra: dict[str, np.ndarray] | None = None,
    units: dict[str, str] | None = None, calibration: Sequence[float] | None = None,
    calibration_unit: str = "m",
) -> bytes:
    """Volumes (GwyBrick); ``units`` sets e.g. si_unit_z (the z axis) and si_unit_w (the values);
    ``calibration`` the z value of each level (Gwyddion's z-calibration data line)."""
    container = GwyContainer()
    for k, cube in {key: cube_zyx, **(extra or {})}.items():
        zres, yres, xres = cube.shape
        items = {
            "xres": xres, "yres": yres, "zres": zres,
            "xreal": 1e-8, "yreal": 1e-8, "zreal": 1e-9, "zoff": 3e-10,
            "data": np.ascontiguousarray(cube, dtype=np.float64).ravel(),  # x fastest, then y, then z
            **{name: GwySIUnit(unitstr=unit) for name, unit in (units or {}).items()},
        }
        if calibration is not None:
            items["calibration"] = GwyObject("GwyDataLine", {
                "res": len(calibration), "real": 1.0,
                "data": np.asarray(calibration, dtype=np.float64),
                "si_unit_y": GwySIUnit(unitstr=calibration_unit),
            })
        container[k] = GwyObject("GwyBrick", items)
        container[f"{k}/title"] = "df volume"
    return gwy_bytes(container)


# --------------------------------------------------------------------------- uploads


class FakeUpload(io.BytesIO):
    """Mimics Streamlit's UploadedFile: a BytesIO with .name and .size."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name
        self.size = len(data)
