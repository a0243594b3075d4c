"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Each write goes to a temporary file in the target's directory (same filesystem, so the rename is atomic),
is flushed and fsynced, then replaces the target with `os.replace`. Every write of the tool goes through
here, so a full disk or a read-only directory is always one StorageError naming the path.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autotrade.errors import StorageError

# Temporary files are created 0600; published files get the usual 0644 so other tools can read them.
_FILE_MODE = 0o644


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically, creating parent directories as needed."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(target, exc, len(data)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException as exc:
        # Never leave a stray temporary file behind, whatever interrupted us (including Ctrl-C).
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(target, exc, len(data)) from None
        raise
    _fsync_directory(target.parent)


def append_line(path: Path | str, line: bytes) -> None:
    """Append one line (no newline in it) to `path`; a last line cut short by a kill is closed off first."""
    target = Path(path)
    try:
        with open(target, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line + b"\n")
            handle.flush()
    except OSError as exc:
        raise write_error(target, exc, len(line) + 1) from None


def write_error(path: Path, exc: OSError, size: int) -> StorageError:
    """The one-line error of a failed write: the path, why, and on a full disk the space the write needed."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"cannot write {path}: no space left on its disk "
            f"(this write needs {_size(size)}, {_free(path.parent)} free); free some space"
        )
    if exc.errno == errno.EROFS:
        return StorageError(f"cannot write {path}: {path.parent} is on a read-only filesystem")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write {path}: permission denied; make {path.parent} writable")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def _free(directory: Path) -> str:
    """The free space of the filesystem holding `directory` (or its nearest existing parent), as text."""
    for folder in (directory, *directory.parents):
        try:
            return _size(shutil.disk_usage(folder).free)
        except OSError:
            continue
    return "unknown space"


def _size(count: int) -> str:
    """A byte count for people: 512 B, 12.3 kB, 4.1 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


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
