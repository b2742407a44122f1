"""Malformed AFM stack uploads through the AFM translation page, driven with Streamlit's AppTest.

Every case must end in exactly one ``st.error``, no exception and no stack on screen, and the
same session must then read a good stack: a hostile upload must not leave the page wedged. The
cases are generated once per module and replayed through one AppTest session. The page runs
without checkpoints (the reader and the page's handling of its errors are under test, not the
translation, which ``test_afm_page.py`` covers).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest
from gwyfile.objects import GwyContainer, GwyObject
from streamlit.testing.v1 import AppTest

from tests.afm_files import (
    gwy_brick, gwy_bytes, gwy_channels, gwy_topography_scan, linear_stack, npy_bytes, npy_header_only, npz_bytes,
    sxm_series, tiff_bytes, write_3ds, write_sxm,
)
from tests.app.test_hostile_structures import afm_page_without_checkpoints

HUGE = 100_000  # the 10⁵×10⁵ maps declared by forged headers


def _stack(h: int = 24, w: int = 20, z: int = 6) -> np.ndarray:
    return linear_stack(h, w, z).astype(np.float32)


def good_files() -> dict[str, bytes]:
    """One valid upload per format, the material every truncation and forgery starts from."""
    cube = _stack()
    return {
        "stack.npy": npy_bytes(cube),
        "stack.npz": npz_bytes(df=cube),
        "stack.tif": tiff_bytes(np.moveaxis(cube, 2, 0)),
        "grid.3ds": write_3ds(cube, z_start=1e-10, z_end=5e-10),
        "scan.sxm": sxm_series([3e-10])[0][1],
        "maps.gwy": gwy_channels([cube[..., k] for k in range(cube.shape[2])]),
        "volume.gwy": gwy_brick(np.moveaxis(cube, 2, 0).astype(np.float64)),
    }


def tiff_declaring(width: int, height: int, pages: int = 1) -> bytes:
    """A little-endian TIFF whose IFDs declare width×height float32 pages backed by 16 bytes each."""
    entries = lambda offset: [  # noqa: E731 (tag, type, count, value)
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, offset), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16), (339, 3, 1, 3),
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        ifd_size = 2 + 12 * 10 + 4
        data_offset = len(out) + ifd_size
        next_ifd = data_offset + 16 if page < pages - 1 else 0
        out += struct.pack("<H", 10)
        for tag, kind, count, value in entries(data_offset):
            out += struct.pack("<HHI", tag, kind, count) + struct.pack("<I" if kind == 4 else "<HH", value,
                                                                        *(() if kind == 4 else (0,)))
        out += struct.pack("<I", next_ifd) + bytes(16)
    return bytes(out)


def npz_member(name: str, payload: bytes, *, file_size: int | None = None, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        zf.writestr(name, payload)
    data = buf.getvalue()
    if file_size is not None:  # forge the declared uncompressed size in both headers
        data = data.replace(struct.pack("<I", len(payload)), struct.pack("<I", file_size))
    return data


def zip_bomb(decoded_bytes: int) -> bytes:
    """A .npz whose one member is a valid float32 .npy header and `decoded_bytes` of zeros, deflated
    (about a thousandth of its size on disk)."""
    side = 64
    z = decoded_bytes // (side * side * 4)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (side, side, z)})
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(16 * 1024 * 1024)
    body = [compressor.compress(header.getvalue())]
    left = side * side * z * 4
    while left:
        n = min(left, len(chunk))
        body.append(compressor.compress(chunk[:n]))
        left -= n
    body.append(compressor.flush())
    compressed = b"".join(body)
    size = len(header.getvalue()) + side * side * z * 4
    crc = zlib.crc32(header.getvalue())
    left = side * side * z * 4
    while left:
        n = min(left, len(chunk))
        crc = zlib.crc32(chunk[:n], crc)
        left -= n
    name = b"df.npy"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(compressed), size, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(compressed), size,
                          len(name), 0, 0, 0, 0, 0, 0)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name),
                      len(local) + len(name) + len(compressed), 0)
    return local + name + compressed + central + name + end


def afm_cases() -> list[tuple[str, list[tuple[str, bytes]]]]:
    """(case id, files): every way an AFM stack upload can be wrong that we know of."""
    good = good_files()
    cube = _stack()
    cases: list[tuple[str, list[tuple[str, bytes]]]] = []

    def add(case: str, *files: tuple[str, bytes]) -> None:
        cases.append((case, list(files)))

    # Wrong or missing extensions, and content that does not match its extension.
    for name in ("stack.txt", "stack.png", "stack.h5", "stack.csv", "stack", "stack.npy.exe", "stack.mat"):
        add(f"extension-{name}", (name, good["stack.npy"]))
    for name, source in (("stack.tif", "stack.npy"), ("stack.npz", "stack.tif"), ("grid.3ds", "maps.gwy"),
                         ("scan.sxm", "grid.3ds"), ("maps.gwy", "stack.npz"), ("stack.npy", "scan.sxm"),
                         ("stack.npz", "stack.npy"), ("stack.tiff", "maps.gwy")):
        add(f"content-of-{source}-named-{name}", (name, good[source]))
    # Garbage in every format's clothes.
    rng = np.random.default_rng(13)
    for ext in ("npy", "npz", "tif", "3ds", "sxm", "gwy"):
        add(f"random-bytes.{ext}", (f"garbage.{ext}", rng.bytes(4096)))
        add(f"zeros.{ext}", (f"zeros.{ext}", bytes(4096)))
        add(f"png.{ext}", (f"image.{ext}", b"\x89PNG\r\n\x1a\n" + rng.bytes(256)))
        add(f"text.{ext}", (f"notes.{ext}", b"hello, this is not a force map\n" * 20))
        add(f"single-byte.{ext}", (f"one.{ext}", b"\x00"))
        add(f"empty.{ext}", (f"empty.{ext}", b""))
    # Every valid file cut short, at the start, in the header and in the data (an .sxm as the second
    # scan of a series: one scan alone is refused as a single height before its data is read).
    first_scan = ("s0.sxm", sxm_series([2e-10])[0][1])
    for name, data in good.items():
        before = [first_scan] if name.endswith(".sxm") else []
        for fraction in (0.02, 0.2, 0.5, 0.8, 0.99):
            add(f"truncated-{name}-{fraction}", *before, (name, data[: max(1, int(len(data) * fraction))]))
        # TIFF locates everything by offsets and a ZIP by its end record, so bytes after the end
        # are legal there; the other formats declare their length.
        if not name.endswith((".tif", ".npz")):
            add(f"truncated-{name}-last-byte", *before, (name, data[:-1]))
            add(f"trailing-junk-{name}", *before, (name, data + b"\x00junk" * 8))
    # Pickled Python objects, which must never be unpickled.
    objects = np.empty((8, 8, 4), dtype=object)
    objects[:] = [1]
    add("pickled-object-npy", ("objects.npy", npy_bytes(objects)))
    add("pickled-object-npz", ("objects.npz", npz_bytes(df=objects)))
    add("raw-pickle-as-npy", ("evil.npy", pickle.dumps({"df": cube})))
    add("raw-pickle-as-npz", ("evil.npz", pickle.dumps([cube])))
    add("pickle-inside-npz", ("evil.npz", npz_member("df.pkl", pickle.dumps(cube))))
    # NaN and inf.
    for label, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        bad = cube.copy()
        bad[3, 4, 2] = value
        add(f"{label}-npy", ("stack.npy", npy_bytes(bad)))
        add(f"{label}-npz", ("stack.npz", npz_bytes(df=bad)))
        add(f"{label}-tif", ("stack.tif", tiff_bytes(np.moveaxis(bad, 2, 0))))
        add(f"{label}-3ds", ("grid.3ds", write_3ds(bad, z_start=1e-10, z_end=5e-10)))
        add(f"{label}-gwy", ("maps.gwy", gwy_channels([bad[..., k] for k in range(bad.shape[2])])))
    add("all-nan-npy", ("stack.npy", npy_bytes(np.full((16, 16, 4), np.nan, np.float32))))
    nan_scan = write_sxm({"OC_M1_Freq._Shift": np.full((24, 20), np.nan, np.float32)}, z=3e-10)
    add("nan-sxm", first_scan, ("s1.sxm", nan_scan))
    # Shapes: 1×1 maps and 10⁵×10⁵ maps declared in headers (backed by a few bytes).
    add("1x1-maps-npy", ("stack.npy", npy_bytes(np.arange(10, dtype=np.float32).reshape(1, 1, 10))))
    add("1x1x1-npy", ("stack.npy", npy_bytes(np.ones((1, 1, 1), np.float32))))
    add("single-height-npy", ("stack.npy", npy_bytes(_stack(z=1))))
    add("2d-map-npy", ("stack.npy", npy_bytes(cube[..., 0])))
    add("4d-npy", ("stack.npy", npy_bytes(cube[None])))
    add("scalar-npy", ("stack.npy", npy_bytes(np.float32(3))))
    add("empty-dimension-npy", ("stack.npy", npy_bytes(np.zeros((0, 64, 10), np.float32))))
    add("middle-height-axis-npy", ("stack.npy", npy_bytes(np.ones((64, 4, 64), np.float32))))
    add("huge-header-npy", ("huge.npy", npy_header_only((HUGE, HUGE, 10), "<f4")))
    add("huge-heights-npy", ("huge.npy", npy_header_only((64, 64, HUGE), "<f4")))
    add("huge-1d-header-npy", ("huge.npy", npy_header_only((HUGE * HUGE,), "<f8")))
    add("negative-shape-header-npy", ("neg.npy", npy_header_only((-1, 64, 10), "<f4")))
    add("huge-header-npz", ("huge.npz", npz_member("df.npy", npy_header_only((HUGE, HUGE, 10), "<f4"))))
    add("huge-tiff", ("huge.tif", tiff_declaring(HUGE, HUGE, pages=2)))
    add("1x1-tiff", ("tiny.tif", tiff_declaring(1, 1, pages=3)))
    add("huge-3ds", ("grid.3ds", good["grid.3ds"].replace(b'Grid dim="20 x 24"', f'Grid dim="{HUGE} x {HUGE}"'.encode())))
    add("1x1-3ds", ("grid.3ds", write_3ds(np.ones((1, 1, 6), np.float32), z_start=1e-10, z_end=5e-10)))
    huge_scan = good["scan.sxm"].replace(b"        20        24", f"{HUGE:>10d}{HUGE:>10d}".encode())
    add("huge-sxm", ("s0.sxm", huge_scan), ("s1.sxm", huge_scan))
    huge_brick = GwyContainer()
    huge_brick["/brick/0"] = GwyObject("GwyBrick", {"xres": HUGE, "yres": HUGE, "zres": 10, "xreal": 1e-8,
                                                    "yreal": 1e-8, "zreal": 1e-9, "data": np.zeros(16)})
    add("huge-gwy-brick", ("volume.gwy", gwy_bytes(huge_brick)))
    add("1x1-gwy-channels", ("maps.gwy", gwy_channels([np.ones((1, 1)) * k for k in range(4)])))
    # Zip bombs and hostile archives.
    add("zip-bomb-npz-1GB", ("bomb.npz", zip_bomb(1024 * 1024 * 1024)))
    add("forged-size-npz", ("forged.npz", npz_member("df.npy", good["stack.npy"], file_size=16)))
    add("1001-members-npz", ("many.npz", npz_bytes(**{f"a{i}": np.zeros(1, np.float32) for i in range(1001)})))
    add("no-arrays-npz", ("none.npz", npz_member("readme.txt", b"hello")))
    add("empty-zip-npz", ("empty.npz", b"PK\x05\x06" + bytes(18)))
    add("two-3d-arrays-npz", ("two.npz", npz_bytes(a=cube, b=cube)))
    add("zip-inside-npz", ("nested.npz", npz_member("inner.zip", good["stack.npz"])))
    # Gwyddion 1.x ("GWYO") files: an old format, not a corrupted new one.
    add("gwyddion-1.x", ("old.gwy", b"GWYO" + b"GwyContainer\x00" + rng.bytes(200)))
    add("gwyddion-1.x-short", ("old.gwy", b"GWYO"))
    add("gwyddion-1.x-named-npy", ("old.npy", b"GWYO" + rng.bytes(64)))
    # Types that are not real numbers.
    add("complex-npy", ("stack.npy", npy_bytes(cube.astype(np.complex64))))
    add("bool-npy", ("stack.npy", npy_bytes(cube > 10)))
    add("string-npy", ("stack.npy", npy_bytes(cube.astype("U4"))))
    add("structured-npy", ("stack.npy", npy_bytes(np.zeros((8, 8, 4), dtype=[("a", "<f4"), ("b", "<i4")]))))
    add("datetime-npy", ("stack.npy", npy_bytes(np.zeros((8, 8, 4), dtype="datetime64[s]"))))
    add("constant-npy", ("stack.npy", npy_bytes(np.full((16, 16, 4), 7.0, np.float32))))
    # Several files that are not one .sxm series.
    add("two-npy-files", ("a.npy", good["stack.npy"]), ("b.npy", good["stack.npy"]))
    add("sxm-and-npy", ("scan.sxm", good["scan.sxm"]), ("stack.npy", good["stack.npy"]))
    series = sxm_series([2e-10, 3e-10], h=24, w=20) + sxm_series([4e-10], h=16, w=16)
    add("sxm-series-of-different-sizes", *[(f"s{i}.sxm", data) for i, (_, data, _) in enumerate(series)])
    add("sxm-series-513-files", *[(f"s{i:03d}.sxm", good["scan.sxm"]) for i in range(513)])
    # Files of the right shape whose channels are other quantities: a scan's images, not a stack.
    add("topography-gwy", ("scan.gwy", gwy_topography_scan(side=64)))
    add("height-channels-gwy", ("z.gwy", gwy_channels([cube[..., k] for k in range(4)],
                                                       titles=[f"Z {k}" for k in range(4)], units=["m"] * 4)))
    add("height-volume-gwy", ("z.gwy", gwy_brick(np.moveaxis(cube, 2, 0).astype(np.float64),
                                                 units={"si_unit_z": "m", "si_unit_w": "m"})))
    return cases


CASES = afm_cases()
GOOD = ("stack.npy", npy_bytes(_stack()))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with afm_page_without_checkpoints(tmp_path_factory) as app:
        app.radio(key="afm_source").set_value("Upload")
        yield app.run()


def show(app: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    app.file_uploader(key="afm_upload").set_value([(name, data, "application/octet-stream") for name, data in files])
    return app.run()


def test_the_case_list_is_large_enough():
    assert len(CASES) >= 150, len(CASES)
    assert len({case for case, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("files", [files for _, files in CASES], ids=[case for case, _ in CASES])
def test_a_hostile_stack_gets_one_clear_error_and_the_session_reads_the_next(session, files):
    show(session, files)
    assert not session.exception, [e.value for e in session.exception]
    errors = [e.value for e in session.error]
    assert len(errors) == 1, errors
    assert "Traceback" not in errors[0] and len(errors[0]) < 600, errors[0]
    assert "afm_input" not in session.session_state
    show(session, [GOOD])
    assert not session.exception and not session.error, [e.value for e in session.error]
    assert session.session_state["afm_input"]["stack"].shape == (64, 64, 10)
