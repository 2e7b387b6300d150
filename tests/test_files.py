"""hybridserve.files.write_json_atomic: the one JSON writer of convert/, eval/ and serve/ (run summaries, eval
results, bench rows written after every row)."""

from __future__ import annotations

import json

import pytest

from hybridserve.files import write_json_atomic


def test_write_replace_and_fail_cleanly(tmp_path):
    path = tmp_path / "new" / "folder" / "result.json"
    write_json_atomic(path, {"a": 1, "name": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1, "name": "é"}
    write_json_atomic(path, {"a": 2}, indent=1)
    assert json.loads(path.read_text()) == {"a": 2}
    with pytest.raises(TypeError):  # not JSON: the old file stays whole, no temp file is left behind
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]
    write_json_atomic(path, {"when": object()}, default=lambda o: "x")  # convert/ writes with default=str
    assert json.loads(path.read_text()) == {"when": "x"}
