"""Content keys and crash-safe file writes.

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed, so a
killed process leaves either the whole file or none (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def content_key(obj: Any, length: int = 16) -> str:
    """Short sha1 of the canonical JSON (sorted keys) of ``obj``: the identity of a config."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


#: Temporary files are named ``.<name>.<host>-<pid>.<random>.tmp``: the writer's host and process id tell
#: a later run whether the writer is gone (see remove_stale_temporaries).
_TMP = re.compile(r"^\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp$")
#: A temporary file older than this is stale whoever wrote it (e.g. a writer on another host that died).
STALE_TMP_S = 24 * 3600


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host}-{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the temporary files under ``root`` that interrupted writes left behind (a killed process
    cannot run its cleanup): those written on this host by a process that no longer runs, and any older
    than STALE_TMP_S. Returns the removed paths. A temporary file of a live writer is never touched."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    removed = []
    for path in Path(root).rglob(".*.tmp"):
        match = _TMP.match(path.name)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        dead = match is not None and match["host"] == host and not _running(int(match["pid"]))
        if dead or age > STALE_TMP_S:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df`` as Parquet with a CRC per data page: truncation breaks the footer, a flipped byte in the data
    fails its page's CRC, so neither can be read back as data (Parquet without page CRCs often decodes a
    damaged page silently)."""
    atomic_write(path, lambda fh: df.to_parquet(fh, index=False, write_page_checksum=True))


def read_parquet(path: Path) -> pd.DataFrame | None:
    """The table at ``path``, or None if it is missing or unreadable (a corrupt file is never data).

    Checks: the footer parses (truncation), every data page matches its CRC, and the column names agree
    across the three copies a file holds (Parquet schema, Arrow schema, pandas metadata), so a damaged
    footer cannot silently rename a column. The file is read into memory with one ``open``: pyarrow
    opens a path more than once, and a writer renaming a new version in between would look like damage.
    """
    try:
        data = Path(path).read_bytes()
        table = pq.read_table(io.BytesIO(data), page_checksum_verification=True)
        names = table.column_names
        pandas_meta = table.schema.pandas_metadata
        copies = [pq.ParquetFile(io.BytesIO(data)).metadata.schema.names]
        if pandas_meta is not None:
            columns = pandas_meta["columns"]
            copies += [[c["field_name"] for c in columns],
                       [names[i] if c["name"] is None else c["name"] for i, c in enumerate(columns)]]
        if any(copy != names for copy in copies):
            return None
        return table.to_pandas()
    except FileNotFoundError:
        return None
    except Exception:
        return None


def write_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))


def write_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Arrays as an uncompressed .npz (a zip with a CRC per member, so truncation is detected)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays at ``path``, or None when missing or corrupt (bad zip, CRC mismatch, truncation)."""
    try:
        # np.load checks a member's CRC only when it reads the member to its end, and a damaged .npy
        # header (a smaller shape) stops it early: verify every member's CRC first.
        # One read, then both checks on the same bytes (see read_parquet on concurrent renames).
        data = Path(path).read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.testzip() is not None:
                return None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        return None
    except Exception:
        return None
