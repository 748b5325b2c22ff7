"""A/B of a runtime change: drain with two copies of the jobworker package, interleaved, same server.

    cp -r worker_image/jobworker /tmp/before/   # before the change (or: git worktree)
    .venv/bin/python bench/ab.py --before /tmp/before --after worker_image --systems jobworker-batch,graphile-batch

Each copy is put first on PYTHONPATH of its runner. Repeats alternate: before, after, then each peer
system given, rep by rep. Prints jobs/s and CPU per 1,000 jobs (worker process + every server process),
median and min-max, and after / before. Uses the durable system server unless BENCH_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="directory holding the 'before' jobworker package")
    p.add_argument("--after", required=True, help="directory holding the 'after' jobworker package")
    p.add_argument("--systems", default="jobworker-batch", help="jobworker systems to A/B, then peers to run beside")
    p.add_argument("--concurrency", type=int, default=24)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    systems = args.systems.split(",")
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with h.server("system") as srv:
        run.build_templates(srv, run.Config(quick=True), set(systems), big=False)
        for rep in range(args.repeats):
            for system in systems:
                family = run.SYSTEMS[system][0]
                sides = [("before", args.before), ("after", args.after)] if family == "jobworker" else [("", "")]
                for side, path in sides:
                    env = {"PYTHONPATH": os.path.abspath(path)} if path else {}
                    label = f"{system}-{side}" if side else system
                    jobs = args.jobs if "batch" in run.SYSTEMS[system][1] else max(args.jobs // 4, 1_000)
                    with srv.fresh(run.GRAPHILE_TEMPLATE) as (db, url):
                        min_id = run.prefill(srv, system, db, url, jobs)
                        argv = run.runner_argv(
                            system,
                            "drain",
                            url,
                            jobs=jobs,
                            concurrency=args.concurrency,
                            extra=["--min-id", str(min_id)],
                        )
                        data, wms, pms = run.one_trial(
                            h.Runner(argv, f"ab-{label}-{rep}", {**run.node_env(), **env}), srv
                        )
                    rate = jobs / data["steady_seconds"]
                    acc[label]["rate"].append(rate)
                    acc[label]["cpu"].append((wms + pms) * 1000 / jobs)
                    acc[label]["worker"].append(wms * 1000 / jobs)
                    h.log(
                        f"ab {label} c={args.concurrency} rep {rep}: {rate:,.0f} jobs/s, "
                        f"CPU-ms/1k {(wms + pms) * 1000 / jobs:.0f}"
                    )
    print(f"| system (c={args.concurrency}) | jobs/s median (min-max) | CPU-ms/1k jobs | worker CPU-ms/1k |")
    print("|---|---:|---:|---:|")
    for label, m in acc.items():
        r, c, w = (m[k] for k in ("rate", "cpu", "worker"))
        print(
            f"| {label} | {statistics.median(r):,.0f} ({min(r):,.0f}-{max(r):,.0f}) | {statistics.median(c):.0f} "
            f"({min(c):.0f}-{max(c):.0f}) | {statistics.median(w):.0f} |"
        )
    for system in systems:
        b, a = acc.get(f"{system}-before"), acc.get(f"{system}-after")
        if a and b:
            print(
                f"{system}: after/before jobs/s {statistics.median(a['rate']) / statistics.median(b['rate']):.2f}x, "
                f"CPU/1k {statistics.median(a['cpu']) / statistics.median(b['cpu']):.2f}x"
            )


if __name__ == "__main__":
    main()
