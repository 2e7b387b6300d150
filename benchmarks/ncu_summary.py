"""One table row per kernel launch from Nsight Compute's text reports (ncu_kernels_gpu.py's output under ncu).

    python benchmarks/ncu_summary.py REPORT.txt [REPORT.txt ...]

For each launch: its kernel name, grid x block, duration, registers per thread, spills, theoretical warps per SM,
DRAM and SM throughput (% of peak). Reports of ours and fla's op on the same inputs then sit side by side in
docs/benchmarks/kernels.md. The durations are ncu's (clocks left alone: --clock-control none), one launch each.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LAUNCH = re.compile(r"^  (\S.*?) \((\d[\d, ]*)\)x\((\d[\d, ]*)\), Context")
METRICS = {
    "Duration": "duration",
    "Registers Per Thread": "registers",
    "Local Memory Spilling Requests": "spill_requests",
    "Theoretical Active Warps per SM": "warps_per_sm",
    "DRAM Throughput": "dram_pct",
    "Compute (SM) Throughput": "sm_pct",
}


def parse(text: str) -> list[dict]:
    """The launches of one report, in order, each with the metrics above that it printed."""
    rows: list[dict] = []
    for line in text.splitlines():
        m = LAUNCH.match(line)
        if m:
            grid, block = (tuple(int(x) for x in g.split(",")) for g in m.groups()[1:])
            rows.append(dict(kernel=m.group(1), grid=grid, block=block))
            continue
        if not rows:
            continue
        for name, key in METRICS.items():
            mm = re.match(rf"^\s+{re.escape(name)}\s+(\S+)?\s+([\d,.]+)\s*$", line)
            if mm and key not in rows[-1]:
                unit, value = mm.group(1), float(mm.group(2).replace(",", ""))
                if key == "duration":  # to ms
                    value = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
                rows[-1][key] = value
    return rows


def table(reports: dict[str, list[dict]]) -> str:
    out = ["| report | kernel | grid x block | ms | registers | spill requests | warps/SM | DRAM % | SM % |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in reports.items():
        for r in rows:
            def g(k, fmt="{:g}"):
                return fmt.format(r[k]) if k in r else "–"
            short = r["kernel"] if len(r["kernel"]) <= 48 else r["kernel"][:45] + "..."
            out.append(f"| {name} | `{short}` | {r['grid']} x {r['block'][0]} | {g('duration', '{:.3g}')} | "
                       f"{g('registers')} | {g('spill_requests', '{:,.0f}')} | {g('warps_per_sm')} | "
                       f"{g('dram_pct')} | {g('sm_pct')} |")
        total = sum(r.get("duration", 0.0) for r in rows)
        out.append(f"| {name} | **sum** | | **{total:.3g}** | | | | | |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    reports = {}
    for p in argv:
        path = Path(p)
        if not path.is_file():
            print(f"no such report: {p}", file=sys.stderr)
            return 2
        reports[path.stem] = parse(path.read_text(errors="replace"))
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
