"""`make bench-chaos`: the long form of the chaos suite (tests/acceptance/test_chaos.py).

    .venv/bin/python bench/chaos.py                 # 3 runs at CHAOS_SCALE=4 (about 4x the load, longer faults)
    .venv/bin/python bench/chaos.py --runs 1 --scale 2

Each run is the pytest test with its own seed; it must pass (lost = 0, no invariant broken). The table of
faults survived, jobs, runs, duplicates and lost is written into bench/README.md between the chaos markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
SIGSTOP_SECONDS = 20  # the fault: the postmaster frozen for 20 s, whatever the scale


def run_once(scale: float, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="jobworker-chaos-") as tmp:
        summary = Path(tmp) / "summary.json"
        env = {
            **os.environ,
            "CHAOS_SCALE": str(scale),
            "CHAOS_SEED": str(seed),
            "CHAOS_SUMMARY": str(summary),
            "CHAOS_SIGSTOP_SECONDS": str(SIGSTOP_SECONDS),
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/acceptance/test_chaos.py"],
            cwd=ROOT,
            env=env,
            check=False,
        )
        result: dict[str, object] = json.loads(summary.read_text()) if summary.exists() else {}
        result.update(seed=seed, seconds=round(time.monotonic() - started), passed=done.returncode == 0)
        return result


def table(results: list[dict[str, object]], scale: float) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        f"## Chaos, long form ({when}, `python bench/chaos.py`, CHAOS_SCALE={scale:g})",
        "",
        "| seed | passed | faults survived | jobs | runs | duplicates | lost | work resumed after restart | seconds |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        faults = ", ".join(str(f) for f in r.get("faults", []))  # type: ignore[attr-defined]
        lines.append(
            f"| {r['seed']} | {'yes' if r['passed'] else 'NO'} | {faults} | {r.get('jobs', '-')} | "
            f"{r.get('runs', '-')} | {r.get('duplicates', '-')} | {r.get('lost', '-')} | "
            f"{r.get('resume_seconds_after_restart', '-')} s | {r['seconds']} |"
        )
    lines += [
        "",
        "A duplicate is a second successful run of one job. Each needs an at-least-once cause tied to its "
        "earlier run (tests/acceptance/chaos_evidence.py), or the run fails: that run's worker was SIGKILLed "
        "or forced down by a second SIGTERM after the run started, the stale-worker sweep took the job from its "
        "worker (the unlock statement and the sweep's own record), or its worker returned the job after losing "
        "its heartbeat (its log). Lost must be 0. SIGSTOP of the postmaster lasts "
        f"{SIGSTOP_SECONDS} s.",
        "",
        *causes(results),
        *[
            f"- seed {r['seed']} broke: {v}"
            for r in results
            for v in list(r.get("violations", []))[:3]  # type: ignore[call-overload]
        ],
        END,
    ]
    return "\n".join(lines)


def causes(results: list[dict[str, object]]) -> list[str]:
    """The duplicates' causes, counted by kind over the runs (the test prints each one with its evidence)."""
    counts: dict[str, int] = {}
    for r in results:
        for kind, _ in r.get("duplicate_causes", []):  # type: ignore[attr-defined]
            counts[kind] = counts.get(kind, 0) + 1
    return [f"- {n} x {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def write_readme(text: str) -> None:
    current = README.read_text()
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        README.write_text(head + text + tail)
    else:
        README.write_text(current.rstrip("\n") + "\n\n" + text + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=4.0)
    args = parser.parse_args()
    results = [run_once(args.scale, seed) for seed in range(1, args.runs + 1)]
    write_readme(table(results, args.scale))
    print(table(results, args.scale))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
