"""A validating reader for the IDX files MNIST and Fashion-MNIST ship in.

Every defect (unreadable gzip, wrong magic, wrong element type or rank, fewer bytes than the
header promises) becomes a DataError that names the file, so nothing trains on garbage.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from deepcluster.errors import DataError

UBYTE = 0x08  # the only element type MNIST-style files use


def read_idx(path: str | Path, expect_ndim: int) -> np.ndarray:
    """The array stored in an IDX file (optionally gzip-compressed): uint8, `expect_ndim`-D."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile: OSError; damaged data: zlib
        raise DataError(f"cannot read {path}: {exc}. Delete the file and fetch it again.") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: bad magic number {raw[:4].hex()} (an IDX file starts with 0000 then its "
            "type and rank). It is not an MNIST-style file; replace it with the original."
        )
    dtype, ndim = raw[2], raw[3]
    if dtype != UBYTE:
        raise DataError(
            f"{path}: element type 0x{dtype:02x}, expected unsigned bytes (0x08); "
            "this is not an image or label file of MNIST / Fashion-MNIST."
        )
    if ndim != expect_ndim:
        kind = "images (N, H, W)" if expect_ndim == 3 else "labels (N,)"
        raise DataError(
            f"{path}: has {ndim} dimensions, expected {expect_ndim} for {kind}. "
            "Are the image and label files swapped?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: its header says shape {shape} ({expected} bytes) but "
            f"{body} bytes follow. Delete the file and fetch it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
