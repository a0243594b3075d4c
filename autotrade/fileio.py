"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Each write goes to a temporary file in the target's directory (same filesystem, so the rename is atomic),
is flushed and fsynced, then replaces the target with `os.replace`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

# Temporary files are created 0600; published files get the usual 0644 so other tools can read them.
_FILE_MODE = 0o644


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically, creating parent directories as needed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        # Never leave a stray temporary file behind, whatever interrupted us (including Ctrl-C).
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` (UTF-8, newlines untranslated) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write `obj` as indented JSON atomically; NaN and ±inf become null (bare NaN is not JSON)."""
    text = json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def json_safe(obj: Any) -> Any:
    """Return `obj` with non-finite floats replaced by None and numpy scalars made plain Python values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    # numpy scalars (np.float32, np.int64, np.bool_) have ndim 0 and .item(); checked by shape so that
    # this module does not import numpy.
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):
        return json_safe(obj.item())
    return obj


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; some filesystems refuse to open directories, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
