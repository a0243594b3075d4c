"""What the harness and a worker child say to each other: framed messages and the job's bytes.

A message is a little-endian (header length, payload length) prefix, a JSON header and raw bytes;
nothing is ever pickled. A job is a header naming the frame's columns and dtypes plus the bars as
raw arrays (index stamps, then each column); a gate job's later prefixes follow as bare rows.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

PREFIX = struct.Struct("<IQ")  # header length, payload length
SET_UP = b"S"  # a child's first byte on its result pipe: its layers are in place, candidate code may run next
HEADER_CAP = 1 << 20  # bytes of JSON header a child may send back
TAIL_ROWS = 32  # rows before each gate cut whose features come back and are compared (every row at the whole cuts)
_FRAME_DTYPES = ("float64", "int64", "bool")  # sent as is; anything else is sent as float64


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """One framed message."""
    encoded = json.dumps(header).encode()
    return PREFIX.pack(len(encoded), len(payload)) + encoded + payload


def unpack(data: bytes, header_cap: int) -> tuple[Any, bytes]:
    """Split a framed message; raise ValueError unless the lengths add up exactly."""
    if len(data) < PREFIX.size:
        raise ValueError("short message")
    header_length, payload_length = PREFIX.unpack_from(data)
    if header_length > header_cap or PREFIX.size + header_length + payload_length != len(data):
        raise ValueError("lengths do not match")
    try:
        header = json.loads(data[PREFIX.size : PREFIX.size + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError("header is not JSON") from exc
    return header, data[PREFIX.size + header_length :]


def encode_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """Column arrays and index as plain numpy (sent to children as raw bytes, never pickled)."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise TypeError("the frame must have a DatetimeIndex")
    columns, arrays = [], []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.name not in _FRAME_DTYPES:
            values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        columns.append(str(name))
        arrays.append(np.ascontiguousarray(values))
    stamps = frame.index.tz_localize(None) if frame.index.tz is not None else frame.index
    unit = np.datetime_data(stamps.dtype)[0]
    return {
        "columns": columns,
        "arrays": arrays,
        "index": np.ascontiguousarray(stamps.asi8),
        "unit": unit,
        "index_name": frame.index.name,
    }


def job_header(
    kind: str, source: str, encoded: dict[str, Any], rows: int, max_columns: int
) -> tuple[dict[str, Any], bytes]:
    """The header every job starts with, and the bytes of the first `rows` bars (index, then each column)."""
    header = {
        "kind": kind,
        "source": source,
        "rows": rows,
        "columns": encoded["columns"],
        "dtypes": [a.dtype.name for a in encoded["arrays"]],
        "unit": encoded["unit"],
        "index_name": encoded["index_name"],
        "max_columns": max_columns,
    }
    return header, rows_bytes(encoded, 0, rows)


def rows_bytes(encoded: dict[str, Any], start: int, stop: int) -> bytes:
    """Bars [start, stop) as the child reads them: their index stamps, then each column's values."""
    return b"".join([encoded["index"][start:stop].tobytes()] + [a[start:stop].tobytes() for a in encoded["arrays"]])


def full_job(source: str, encoded: dict[str, Any], rows: int, max_columns: int) -> bytes:
    """The job of the full run: the header and every bar."""
    return pack(*job_header("full", source, encoded, rows, max_columns))


def gate_job(
    source: str, encoded: dict[str, Any], cuts: list[int], tail_rows: int, whole: set[int], max_columns: int
) -> tuple[bytes, deque[bytes]]:
    """The gate's first message (header and the bars of the first prefix) and each later prefix's new bars."""
    header, payload = job_header("gate", source, encoded, cuts[0], max_columns)
    header.update(cuts=cuts, tail_rows=tail_rows, whole=sorted(whole))
    chunks = deque(rows_bytes(encoded, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    return pack(header, payload), chunks


def job_arrays(header: dict[str, Any], rows: int, payload: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
    """The index stamps and column arrays of `rows` bars laid out as rows_bytes wrote them."""
    stamps = np.frombuffer(payload, dtype=np.int64, count=rows)
    arrays, offset = [], 8 * rows
    for dtype in header["dtypes"]:
        values = np.frombuffer(payload, dtype=dtype, count=rows, offset=offset).copy()
        offset += values.nbytes
        arrays.append(values)
    return stamps, arrays
