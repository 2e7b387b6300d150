"""Which head dims did a kernels GPU session validate? Prints them as HYBRIDSERVE_TRITON_HEAD_DIMS wants ("64x64").

    python benchmarks/head_dims_verdict.py SESSION_DIR     # the --out of benchmarks/kernels_gpu_session.py

A (K, V) pair counts only when every probe of benchmarks/probe_kernels_gpu.py at those dims passed in its default
variant (no pinned config, no other ptxas) and, if the session ran the real-size checks for that K
(check_<K>.json), every check passed. Anything missing or failed: the pair is left out (the references run).
Prints an empty line when nothing beyond the built-in validated dims passed; the reasons go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def verdict(session: Path) -> list[str]:
    probes_file = session / "probes.json"
    if not probes_file.exists():
        print(f"no {probes_file}", file=sys.stderr)
        return []
    by_dims: dict[tuple[int, int], list[dict]] = {}
    for p in json.loads(probes_file.read_text())["probes"]:
        if p.get("variant", "default") == "default":
            by_dims.setdefault((p["dims"][1], p["dims"][2]), []).append(p)
    passed = []
    for (K, V), probes in sorted(by_dims.items()):
        bad = [f"{p['probe']} {p.get('dtype')}: {p['status']}" for p in probes if p["status"] != "PASS"]
        check_file = session / f"check_{K}.json"
        if check_file.exists():
            bad += [c["check"] for c in json.loads(check_file.read_text()) if not c.get("ok")]
        else:
            bad.append(f"no {check_file.name}")
        if bad:
            print(f"{K}x{V}: not validated ({'; '.join(bad[:6])})", file=sys.stderr)
        else:
            print(f"{K}x{V}: {len(probes)} probes and the real-size checks passed", file=sys.stderr)
            passed.append(f"{K}x{V}")
    return passed


if __name__ == "__main__":
    print(",".join(verdict(Path(sys.argv[1]))))
