"""Probe-particle AFM of an electrode cluster with ppafm's OpenCL AFMulator, and its descriptors.

One :class:`AFMSimulator` compiles the OpenCL kernels (≈ 2 s on a CPU) and allocates the
force-field and scan buffers once; every :meth:`AFMSimulator.simulate` call then only moves
atoms into a fixed frame and reruns the kernels, so a campaign pays the set-up once per
process. OpenCL runs on a GPU platform when one is installed, otherwise on PoCL's CPU device
(``pip install "pyopencl[pocl]"``).

Physics (the ASD-AFM recipe): a CO-like tip — an O probe particle on a lateral spring of
0.25 N/m, 3 Å below the tip apex — relaxes in a Lennard-Jones force field of the cluster;
the frequency shift Δf at each height is the force convolved over a 1 Å oscillation
(``df_steps`` = 10 steps of 0.1 Å). The sample carries no charges: partial charges of a cut
cluster are ill-defined and formal oxidation states would swamp the image with the
cluster's own electrostatic edge effects.

The frame, fixed for every view so that buffers are reused and heights mean the same thing in
every stack: the rotated cluster is centred laterally on the scan window, and shifted
vertically so that the highest point of any atom's van der Waals sphere is at z = 0. The tip
apex's closest height is then ``R_probe + distance`` above that (ppafm's ``distAbove``
convention); with the default 2.7 Å the closest images resolve the top atoms through Pauli
repulsion and the farthest show the smooth attraction of the whole cap, the regime of
high-resolution CO-tip experiments.

Output layout. ``stack`` is (H, W, n_heights) = (grid, grid, 10): rows are y and columns x
(row 0 at the scan window's lowest y; display with ``origin="lower"``), and **index 0 along
the last axis is the FARTHEST tip height, index −1 the closest** (ppafm's order on this path).
It is min–max scaled to [−1, 1] per stack, so contrast ratios between heights survive; the raw
Δf range is kept in ``df_range``. ``descriptors`` is (H, W, 6): height map, vdW spheres,
atomic disks, and a type map R, G, B (red: other elements, green: gas-phase elements,
blue: the working ion), each scaled to [−1, 1] from its fixed physical range, so −1 always
means "no atom here" and values compare across materials.

The force-field box spans the scan window plus ``lateral_pad`` on every side and the probe's
height range plus margins: ppafm samples the box periodically (OpenCL ``CLK_ADDRESS_REPEAT``),
so a probe that bends out of a tight box, or the height map's iso-surface search below the
scan, would read the opposite edge's forces. Growing every margin by 1–3 Å (on the same grid
points) changes no stack pixel by more than 0.4 % of its image's contrast and the height map
not at all; ``tests/test_afm_simulation.py`` checks this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

# Elements shown green in the type map: those that are gases as elements (symbol: Z; spelled
# out so importing this module, which the CLI parser does, needs no pymatgen).
GAS_PHASE_ELEMENTS: dict[str, int] = {"H": 1, "He": 2, "N": 7, "O": 8, "F": 9, "Ne": 10, "Cl": 17,
                                      "Ar": 18, "Kr": 36, "Xe": 54, "Rn": 86}
GAS_PHASE_Z: frozenset[int] = frozenset(GAS_PHASE_ELEMENTS.values())
DESCRIPTOR_NAMES: tuple[str, ...] = ("height", "vdw", "disks", "type_r", "type_g", "type_b")
SUPPORTED_GRIDS: tuple[int, ...] = (32, 64, 128, 256)

# The ASD-AFM CO tip (ppafm's defaults): O probe, stiffness (x, y, z, r) in N/m, apex offset.
PROBE_Z = 8
TIP_STIFFNESS = (0.25, 0.25, 0.0, 30.0)
TIP_R0 = (0.0, 0.0, 3.0)
# Probe particles a stack can be simulated with (atomic number of the particle). Every probe
# hangs on the CO tip's spring: the robustness table asks what a different particle alone does
# (its size and well depth), a question a change of two parameters at once could not answer.
PROBES: dict[str, int] = {"CO": PROBE_Z, "Xe": 54}
DEFAULT_PROBE = "CO"

# Fixed physical ranges of the descriptor maps (Å, or ppafm's unitless disk weight); the
# lower end is ppafm's background value, so it maps to −1.
HEIGHT_RANGE = (0.0, 2.0)  # HeightMap: Å above a floor 2 Å below the top of the probe's iso-force surface
SPHERES_RANGE = (-1.5, 0.0)  # vdwSpheres / type map: Å below the top vdW surface (zmin=−1.5)
DISKS_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class SimulationConfig:
    """Scan geometry. ``grid`` is the scan's pixels per side (64 ships; 128 is the published one)."""

    grid: int = 64
    scan_size: float = 16.0  # Å, side of the square scan window
    n_heights: int = 10  # images in the stack
    df_steps: int = 10  # z steps in the Δf convolution (amplitude = df_steps * dz)
    dz: float = 0.1  # Å between heights
    distance: float = 2.7  # Å, ppafm's distAbove: closest apex height = R_probe + distance over the top vdW surface
    # FF grid density; 8 px/Å (0.125 Å) matches the 128-px pixel pitch and is 2x cheaper than
    # ppafm's 10 px/Å, which it reproduces to within 2 % of each slice's contrast.
    pix_per_angstrom: int = 8
    # Force-field box, in the frame where the top vdW surface is at z = 0.
    lateral_pad: float = 1.5  # Å beyond the scan window on each side
    # Bottom of the box (probe-particle z). The height map follows the probe's iso-force
    # surface, ~1.4 Å above the top vdW surface, down to 2 Å deeper (HEIGHT_RANGE); the force
    # field must be real there, whatever the scan distance.
    box_floor: float = -1.5
    pad_above: float = 0.5  # Å above the probe's highest unrelaxed position
    probe: str = DEFAULT_PROBE  # a key of PROBES

    def __post_init__(self) -> None:
        if self.grid not in SUPPORTED_GRIDS:
            raise ValueError(f"grid must be one of {SUPPORTED_GRIDS}, got {self.grid}")
        if self.probe not in PROBES:
            raise ValueError(f"probe must be one of {', '.join(PROBES)}, got {self.probe!r}")
        if self.n_heights < 1 or self.df_steps < 1:
            raise ValueError("n_heights and df_steps must be at least 1")
        if min(self.scan_size, self.dz, self.lateral_pad, self.pad_above) <= 0:
            raise ValueError("scan_size, dz, lateral_pad and pad_above must be positive")
        if self.pix_per_angstrom < 2:
            raise ValueError("pix_per_angstrom must be at least 2")

    @property
    def scan_steps(self) -> int:
        """z steps the probe makes: each of the n_heights images needs df_steps forces."""
        return self.n_heights + self.df_steps - 1

    @property
    def pixel_size(self) -> float:
        return self.scan_size / (self.grid - 1)

    @property
    def probe_z(self) -> int:
        return PROBES[self.probe]

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        if values["probe"] == DEFAULT_PROBE:
            # Campaigns saved before probes were a setting hold no 'probe' key; they used CO.
            del values["probe"]
        return values


@dataclass(frozen=True)
class Validity:
    """The recipe's check: is the brightest pixel of the closest image inside the window?"""

    valid: bool
    reason: str
    x: int  # column of the brightest pixel (−1 when undefined)
    y: int  # row
    edge_distance: int  # pixels to the nearest window edge


@dataclass
class SimulationResult:
    stack: np.ndarray  # (H, W, n_heights) float32 in [−1, 1]; index 0 = farthest height
    descriptors: np.ndarray  # (H, W, 6) float32 in [−1, 1], channels DESCRIPTOR_NAMES
    rotation: np.ndarray  # (3, 3) applied to the centred cluster
    df_range: tuple[float, float]  # raw Δf (Hz) that maps to −1 and +1
    tip_heights: np.ndarray  # (n_heights,) mean apex height (Å) above the top vdW surface
    validity: Validity
    wall_time_s: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.validity.valid


# --------------------------------------------------------------------------- scaling, validity


def scale_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto [−1, 1], clipping; a degenerate range gives −1 everywhere."""
    values = np.asarray(values, dtype=np.float32)
    if not high > low:
        return np.full(values.shape, -1.0, dtype=np.float32)
    return np.clip(2.0 * (values - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


def check_validity(stack: np.ndarray) -> Validity:
    """Brightest pixel of the closest image and its distance from the window edge.

    ``stack`` is (H, W) or (H, W, n) with the closest height last. Edge distance
    min(x, W−1−x, y, H−1−y) = 0 means the brightest feature sits on (or beyond) the window
    edge, i.e. the scan window misses the structure's main feature: the view is invalid.
    """
    stack = np.asarray(stack)
    if stack.ndim not in (2, 3) or min(stack.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W) image or (H, W, n) stack, got shape {stack.shape}")
    image = stack if stack.ndim == 2 else stack[:, :, -1]
    if not np.all(np.isfinite(image)):
        return Validity(False, "the closest image holds NaN or infinite values", -1, -1, 0)
    if np.ptp(image) == 0:
        return Validity(False, "the closest image is flat: no feature to locate", -1, -1, 0)
    h, w = image.shape
    y, x = (int(v) for v in np.unravel_index(np.argmax(image), image.shape))
    edge = min(x, w - 1 - x, y, h - 1 - y)
    if edge == 0:
        return Validity(False, f"brightest pixel (x={x}, y={y}) lies on the window edge: "
                               "the main feature is outside the scan window", x, y, edge)
    return Validity(True, "ok", x, y, edge)


# --------------------------------------------------------------------------- element classes


def _atomic_number(element: str | int) -> int:
    from pymatgen.core import Element

    if isinstance(element, (int, np.integer)):
        return int(element)
    try:
        return Element(str(element)).Z
    except ValueError as exc:
        raise ValueError(f"unknown element {element!r}") from exc


def type_channels(Zs: Sequence[int], ion: str | int | None) -> np.ndarray:
    """Type-map channel of every atom: 0 red (other), 1 green (gas-phase element), 2 blue (working ion)."""
    ion_z = _atomic_number(ion) if ion is not None else None
    return np.array([2 if z == ion_z else 1 if z in GAS_PHASE_Z else 0 for z in map(int, Zs)],
                    dtype=np.int32)


# --------------------------------------------------------------------------- OpenCL set-up


@contextlib.contextmanager
def _quiet_opencl() -> Iterator[None]:
    """Silence pyopencl's RepeatedKernelRetrieval warnings.

    ppafm looks its kernels up by attribute on every call, which pyopencl flags as a possible
    slowdown; measured here it costs nothing, and the warning would repeat once per kernel.
    """
    import pyopencl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pyopencl.RepeatedKernelRetrieval)
        # ppafm 0.4.1 builds its force-field image with the old cl.Image signature; pyopencl
        # 2026.1 still accepts it (pinned), so the notice is for ppafm's maintainers, not users.
        warnings.filterwarnings("ignore", message="Non-descriptor Image constructor", category=DeprecationWarning)
        yield


def pick_platform() -> int:
    """Index of the OpenCL platform to use: ``BATTGEN_OPENCL_PLATFORM``, else the first one with a GPU."""
    import pyopencl as cl

    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise RuntimeError('no OpenCL platform found; install one, e.g. `pip install "pyopencl[pocl]"` '
                           "for a CPU device") from exc
    if not platforms:
        raise RuntimeError('no OpenCL platform found; `pip install "pyopencl[pocl]"` gives a CPU device')
    override = os.environ.get("BATTGEN_OPENCL_PLATFORM")
    if override is not None:
        index = int(override)
        if not 0 <= index < len(platforms):
            raise RuntimeError(f"BATTGEN_OPENCL_PLATFORM={index}, but only {len(platforms)} platform(s) exist")
        return index
    for index, platform in enumerate(platforms):
        try:
            if platform.get_devices(device_type=cl.device_type.GPU):
                return index
        except cl.Error:  # a platform without GPUs raises DEVICE_NOT_FOUND
            continue
    return 0


def _init_opencl(platform: int | None) -> str:
    """Create ppafm's process-wide OpenCL environment once; return a description of the device."""
    from ppafm.ocl import field as ff_cl
    from ppafm.ocl import oclUtils, relax

    if ff_cl.oclu is None or relax.oclu is None:
        oclUtils.init_env(pick_platform() if platform is None else platform)
    env = ff_cl.oclu
    devices = ", ".join(d.name.strip() for d in env.ctx.devices)
    return f"{env.platform.name}: {devices}"


# --------------------------------------------------------------------------- simulator


class AFMSimulator:
    """ppafm AFMulator and auxiliary maps, set up once for a :class:`SimulationConfig`.

    Not thread-safe (ppafm keeps one OpenCL queue per process); use one per process.
    """

    def __init__(self, config: SimulationConfig | None = None, *, platform: int | None = None):
        self.config = config or SimulationConfig()
        import ppafm  # noqa: F401  (its import configures its logger, which must come first)

        if "PPAFM_LOG_LEVEL" not in os.environ:
            # ppafm logs every kernel build and parameter file to stdout at INFO.
            logging.getLogger("ppafm").setLevel(logging.WARNING)
        start = time.perf_counter()
        with _quiet_opencl():
            self.device = _init_opencl(platform)
            self._build()
        # PoCL compiles each kernel on its first launch (≈ 1–2 s together); pay that here so
        # every simulate() call costs the same and timings measure the steady state.
        self.simulate(np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]), [6, 8], ion=8)
        self.setup_time_s = time.perf_counter() - start

    def _build(self) -> None:
        from ppafm import common
        from ppafm.ml.AuxMap import AtomicDisks, HeightMap, vdwSpheres
        from ppafm.ocl.AFMulator import AFMulator

        c = self.config
        half = c.scan_size / 2
        self.type_params = common.loadSpecies()
        self.probe_radius = float(self.type_params[c.probe_z - 1][0])
        z_low = self.probe_radius + c.distance
        z_high = z_low + c.scan_steps * c.dz
        self.scan_window = ((-half, -half, z_low), (half, half, z_high))
        self.lvec = self._force_field_box(z_low, z_high)
        self.afmulator = AFMulator(
            pixPerAngstrome=c.pix_per_angstrom,
            lvec=self.lvec,
            scan_dim=(c.grid, c.grid, c.scan_steps),
            scan_window=self.scan_window,
            iZPP=c.probe_z,
            Qs=[0.0, 0.0, 0.0, 0.0],  # no sample charges, so tip charges would do nothing
            QZs=[0.0, 0.0, 0.0, 0.0],
            df_steps=c.df_steps,
            tipR0=list(TIP_R0),
            tipStiffness=list(TIP_STIFFNESS),
            npbc=(0, 0, 0),
        )
        window_2d = ((-half, -half), (half, half))
        dim_2d = (c.grid, c.grid)
        self.height_map = HeightMap(self.afmulator.scanner, zmin=-HEIGHT_RANGE[1])
        self.vdw_spheres = vdwSpheres(scan_dim=dim_2d, scan_window=window_2d, zmin=SPHERES_RANGE[0])
        self.atomic_disks = AtomicDisks(scan_dim=dim_2d, scan_window=window_2d)
        # Mean apex height of each image over the oscillation, above the top vdW surface,
        # farthest first (ppafm's order).
        lowest = z_low + c.df_steps * c.dz / 2
        self.tip_heights = (lowest + c.dz * np.arange(c.n_heights))[::-1].astype(np.float32)

    def _force_field_box(self, z_low: float, z_high: float) -> np.ndarray:
        """Force-field cell (origin + 3 edge vectors) around the probe's reachable volume.

        The lateral edges hold a multiple of 8 grid points, so the grid's point count is a
        multiple of 64: ppafm's LJ kernel writes one element past the grid unless the count is
        a multiple of its work-group size (32).
        """
        c = self.config
        ppa = c.pix_per_angstrom
        lateral = float(np.ceil((c.scan_size + 2 * c.lateral_pad) * ppa / 8) * 8 / ppa)
        # The probe hangs TIP_R0 below the apex; it relaxes at most a few tenths of an Å down.
        floor = min(c.box_floor, z_low - TIP_R0[2] - 1.0)
        vertical = float(np.ceil((z_high - TIP_R0[2] + c.pad_above - floor) * ppa) / ppa)
        return np.array([
            [-lateral / 2, -lateral / 2, floor],
            [lateral, 0.0, 0.0],
            [0.0, lateral, 0.0],
            [0.0, 0.0, vertical],
        ])

    def vdw_radii(self, Zs: np.ndarray) -> np.ndarray:
        """Lennard-Jones radii (Å) ppafm uses for the atoms (atomtypes.ini)."""
        return np.array([self.type_params[int(z) - 1][0] for z in Zs], dtype=np.float64)

    def place(self, xyz: np.ndarray, Zs: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
        """Atoms rotated about their centroid, centred in the window, top vdW surface at z = 0."""
        xyz = np.asarray(xyz, dtype=np.float64)
        centred = xyz - xyz.mean(axis=0)
        rotated = centred @ np.asarray(rotation, dtype=np.float64).T if rotation is not None else centred
        rotated[:, 2] -= (rotated[:, 2] + self.vdw_radii(Zs)).max()
        return rotated

    def simulate(
        self,
        xyz: np.ndarray,
        Zs: Sequence[int],
        rotation: np.ndarray | None = None,
        *,
        ion: str | int | None = None,
    ) -> SimulationResult:
        """Stack and descriptors of the cluster ``(xyz, Zs)`` seen along ``rotation``'s last row.

        ``ion`` is the working ion (symbol or Z): its atoms are the type map's blue channel.
        """
        start = time.perf_counter()
        Zs = np.asarray(Zs, dtype=np.int32)
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) != len(Zs) or len(Zs) == 0:
            raise ValueError(f"need (N, 3) coordinates and N atomic numbers, got {xyz.shape} and {Zs.shape}")
        if Zs.min() < 1 or Zs.max() > len(self.type_params):
            raise ValueError(f"atomic numbers must lie in 1..{len(self.type_params)}")
        rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        if (rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
                or np.linalg.det(rotation) < 0):
            # A reflection would image the crystal's mirror image.
            raise ValueError("rotation must be a proper rotation: an orthonormal 3x3 matrix with det +1")
        placed = self.place(xyz, Zs, rotation)
        xyzqs = np.concatenate([placed, np.zeros((len(Zs), 1))], axis=1)
        timings: dict[str, float] = {}

        with _quiet_opencl():
            t = time.perf_counter()
            raw = self.afmulator(placed, Zs, qs=None)  # (x, y, heights), farthest first
            timings["afm_s"] = time.perf_counter() - t
            t = time.perf_counter()
            height = self.height_map()  # reads the scanner state the AFM call just left
            vdw = self.vdw_spheres(xyzqs, Zs)
            disks = self.atomic_disks(xyzqs, Zs)
            types = self._type_map(xyzqs, Zs, ion)
            timings["descriptors_s"] = time.perf_counter() - t

        # ppafm arrays are indexed [x, y]; images are stored [row = y, column = x].
        raw = np.ascontiguousarray(raw.transpose(1, 0, 2))
        df_low, df_high = float(raw.min()), float(raw.max())
        stack = scale_to_unit(raw, df_low, df_high)
        descriptors = np.stack([
            scale_to_unit(height.T, *HEIGHT_RANGE),
            scale_to_unit(vdw.T, *SPHERES_RANGE),
            scale_to_unit(disks.T, *DISKS_RANGE),
            *(scale_to_unit(types[:, :, k].T, *SPHERES_RANGE) for k in range(3)),
        ], axis=-1)
        return SimulationResult(
            stack=stack,
            descriptors=descriptors,
            rotation=rotation,
            df_range=(df_low, df_high),
            tip_heights=self.tip_heights.copy(),
            validity=check_validity(stack),
            wall_time_s=time.perf_counter() - start,
            timings=timings,
        )

    def _type_map(self, xyzqs: np.ndarray, Zs: np.ndarray, ion: str | int | None) -> np.ndarray:
        """(x, y, 3) vdW-sphere heights of the topmost atom's class per pixel (R, G, B)."""
        from ppafm.ml.AuxMap import MultiMapSpheresElements

        channels = type_channels(Zs, ion)
        groups = [sorted({int(z) for z, ch in zip(Zs, channels) if ch == k}) for k in range(3)]
        c = self.config
        half = c.scan_size / 2
        # Built per call: its element groups are fixed at construction, and it costs microseconds.
        # Occlusion on: a pixel shows only the class of the atom the tip meets first.
        type_map = MultiMapSpheresElements(
            scan_dim=(c.grid, c.grid), scan_window=((-half, -half), (half, half)),
            zmin=SPHERES_RANGE[0], elems=groups, bOccl=1,
        )
        return type_map(xyzqs, Zs)
