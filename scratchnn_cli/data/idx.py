"""IDX files (the MNIST / Fashion-MNIST format) of unsigned bytes, gzip'd or plain."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from scratchnn_cli.errors import DataError, one_line

_IDX_NDIMS = (1, 3)
_UNSIGNED_BYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Decode a gzip'd or plain IDX file of unsigned bytes (1-D labels or 3-D images) into a
    read-only uint8 array; a bad file is one :class:`DataError` naming it."""
    path = Path(path)
    data = _decompressed_bytes(path)
    ndim = _check_magic(data, path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    payload = len(data) - header
    if payload != math.prod(dims):
        raise DataError(
            f"{path}: IDX payload is {payload} bytes but the header's shape {dims} needs "
            f"{math.prod(dims)} (truncated or corrupt file); replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _decompressed_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the IDX file: {one_line(exc)}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: corrupt or truncated gzip file ({one_line(exc)}); replace it"
        ) from None


def _check_magic(data: bytes, path: Path) -> int:
    """Check the 4-byte magic number (0, 0, type, ndim); returns the number of dimensions."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != _UNSIGNED_BYTE:
        raise DataError(
            f"{path}: unsupported IDX data type 0x{dtype_code:02x} (only 0x08, unsigned byte)"
        )
    if ndim not in _IDX_NDIMS:
        raise DataError(f"{path}: IDX file has {ndim} dimensions (expected 1 or 3)")
    return ndim
