"""Profile jobworker's drain under py-spy: where does a worker spend its time per job?

    .venv/bin/python bench/profile.py --variant default --concurrency 10
    .venv/bin/python bench/profile.py --variant batch --concurrency 24 --top 40

py-spy (from PyPI) is installed into bench/.work/venvs/profile on first use. Writes the collapsed
stacks to bench/.work/profile-<variant>-c<C>.txt and prints the functions with the most samples,
by own time and including callees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import run

PROFILE_VENV = h.VENVS / "profile"


def ensure_pyspy() -> Path:
    exe = PROFILE_VENV / "bin" / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PROFILE_VENV)], check=True)
        subprocess.run([str(PROFILE_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return exe


def summarize(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "including callees:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="default", choices=["default", "batch"])
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--gil", action="store_true", help="only samples holding the GIL (CPU work, not waiting)")
    args = p.parse_args()
    pyspy = ensure_pyspy()
    system = "jobworker-batch" if args.variant == "batch" else "jobworker"
    out = h.WORK / f"profile-{args.variant}-c{args.concurrency}.txt"
    cfg = run.Config(quick=False)
    with h.server() as srv:
        run.build_templates(srv, cfg, {system}, big=False)
        with srv.fresh(run.GRAPHILE_TEMPLATE) as (db, url):
            min_id = run.prefill(srv, system, db, url, args.jobs)
            argv = run.runner_argv(
                system, "drain", url, jobs=args.jobs, concurrency=args.concurrency, extra=["--min-id", str(min_id)]
            )
            spy = [str(pyspy), "record", "-r", str(args.rate), "-f", "raw", "-o", str(out), "--nonblocking"]
            spy += ["--gil", "--"] if args.gil else ["--"]
            data, _, _ = run.one_trial(h.Runner([*spy, *argv], f"profile-{system}"), srv)
    print(f"{system} c={args.concurrency}: {args.jobs / data['steady_seconds']:,.0f} jobs/s under py-spy")
    print(summarize(out, args.top))


if __name__ == "__main__":
    main()
