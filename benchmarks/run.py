"""`make bench`: run every `benchmarks/bench_*.py` and write its results to `benchmarks/results/<name>.json`.

Each module defines `run() -> dict`. Run one with `python -m benchmarks.run plan` (names without `bench_`).
`BENCH_QUICK=1` (`make bench-quick`): fewer steps and rounds, a smoke run whose results go to
`benchmarks/results/quick/` so they never replace measurements. The side-by-side table of ratios
(benchmarks/summary.py) is printed at the end and written as `summary.json`.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> int:
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if names:
        modules = [m for m in modules if m.removeprefix("bench_") in names]
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    out_dir = HERE / "results" / "quick" if quick else HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in modules:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as e:  # noqa: BLE001 - report and go on with the other benchmarks
            print(f"   failed: {type(e).__name__}: {e}", flush=True)
            failed += 1
            continue
        if "skipped" in result:  # e.g. a GPU benchmark on a CPU machine: keep the numbers recorded before
            print(f"   skipped: {result['skipped']}", flush=True)
            continue
        result = {
            "benchmark": name.removeprefix("bench_"),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "wall_s": round(time.perf_counter() - start, 2),
            **result,
        }
        path = out_dir / f"{name.removeprefix('bench_')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2), flush=True)
    from benchmarks.summary import main as summary

    summary([str(out_dir)])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
