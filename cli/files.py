"""Small file helpers shared by the pipeline's folders (imports nothing beyond the standard library)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json_atomic(path, data, *, indent: int = 2, default=None) -> None:
    """Replace `path` with `data` as JSON atomically: written to a temp file in the same folder, then renamed over
    it, so a reader (or a crash) never sees half a file. Creates the folder; a failed write leaves no temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, ensure_ascii=False, default=default)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
