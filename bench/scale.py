"""Scale-out and the server's own limit, for bench/run.py (issue #13).

- ``w_pgbench``: pgbench ``-S`` (select only) and ``-N`` (simple update, no branch contention) with 1
  and 10 clients on the same server in the same run, so every drain figure can be stated as a fraction
  of what this PostgreSQL does with trivial transactions.
- ``w_scale``: 1, 2 and 4 worker processes of one system sharing one batch in one database, each at
  c=10 and c=24. Beside each figure: WAL and the top statements over the drain, from ``pg_stat_wal``
  and ``pg_stat_statements`` (reset before each trial), which say where it stops scaling.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import harness as h

PGBENCH_DB = "pgbench"
PGBENCH_SCALE = 10


def pgbench_exe() -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), key=lambda p: int(p.parts[-3]))
    return str(found[-1]) if found else shutil.which("pgbench")


def w_pgbench(srv: Any, cfg: Any, rec: Any, seconds: float) -> None:
    exe = pgbench_exe()
    if exe is None:
        h.log("pgbench not found: skipping the server-limit workload")
        return
    srv.drop_database(PGBENCH_DB)
    srv.create_database(name=PGBENCH_DB)
    url = srv.url_for(PGBENCH_DB)
    subprocess.run([exe, "-i", "-q", "-s", str(PGBENCH_SCALE), url], check=True, capture_output=True)
    acc: dict[tuple[str, int], list[float]] = defaultdict(list)
    cpu: dict[tuple[str, int], list[float]] = defaultdict(list)
    for rep in range(cfg.repeats):
        for mode in ("-S", "-N"):
            for clients in (1, 10):
                pg = h.PgCpu(srv)
                argv = [exe, mode, "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)), "-n", url]
                out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
                match = re.search(r"tps = ([0-9.]+)", out)
                if not match:
                    raise RuntimeError(f"pgbench {mode} -c {clients}: no tps in its output:\n{out}")
                tps = float(match.group(1))
                acc[(mode, clients)].append(tps)
                pg_ms = pg.delta() or 0.0
                cpu[(mode, clients)].append(pg_ms * 1000 / (tps * seconds))
                h.log(f"pgbench {mode} c={clients} rep {rep}: {tps:,.0f} tps")
    for (mode, clients), values in acc.items():
        config = {"mode": mode, "clients": clients, "seconds": seconds, "scale": PGBENCH_SCALE}
        rec.add("pgbench", "pgbench", config, "tps", "transactions/s", "higher", values)
        rec.add("pgbench", "pgbench", config, "pg_cpu_ms_per_1k", "CPU-ms/1k tx", "lower", cpu[(mode, clients)])
    srv.drop_database(PGBENCH_DB)


def _reset_stats(srv: Any, db: str) -> None:
    srv.execute("create extension if not exists pg_stat_statements", db)  # preloaded by syspg.py
    srv.execute("select pg_stat_statements_reset()", db)
    srv.execute("select pg_stat_reset_shared('wal')", db)


def _read_stats(srv: Any, db: str, jobs: int) -> dict[str, Any]:
    wal = srv.execute("select wal_records, wal_bytes, wal_write, wal_sync from pg_stat_wal", db)[0]
    top = srv.execute(
        """select left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls, total_exec_time, rows
           from pg_stat_statements
           where dbid = (select oid from pg_database where datname = current_database())
           order by total_exec_time desc limit 3""",
        db,
    )
    return {
        "wal_bytes_per_job": float(wal[1]) / jobs,
        "wal_syncs_per_1k": float(wal[3]) * 1000 / jobs,
        "top_statements": [
            {"query": q, "calls": int(c), "ms_per_1k_jobs": float(t) * 1000 / jobs, "rows": int(r)}
            for q, c, t, r in top
        ],
    }


def scale_trial(run: Any, srv: Any, system: str, jobs: int, procs: int, c: int, label: str) -> dict[str, Any]:
    family = run.SYSTEMS[system][0]
    with srv.fresh(run.TEMPLATES.get(family, run.GRAPHILE_TEMPLATE)) as (db, url):
        min_id = run.prefill(srv, system, db, url, jobs)
        extra = ["--min-id", str(min_id), "--procs", str(procs)]
        runners = [
            h.Runner(
                run.runner_argv(system, "drain", url, jobs=jobs, concurrency=c, extra=extra),
                f"{label}-p{i}",
                run.node_env(),
            )
            for i in range(procs)
        ]
        try:
            for r in runners:
                r.start()
            for r in runners:
                r.expect("READY", 120)
            _reset_stats(srv, db)
            pg = h.PgCpu(srv)
            c0 = sum(h.cpu_ms(r.pid) or 0.0 for r in runners)
            for r in runners:
                r.send("GO")
            done = [r.expect("DONE", 900) for r in runners]
            c1 = sum(h.cpu_ms(r.pid) or 0.0 for r in runners)
            pg_ms = pg.delta() or 0.0
            stats = _read_stats(srv, db, jobs)
        finally:
            for r in runners:
                r.close()
    handled = sum(d["handled"] for d in done)
    if handled < jobs:
        raise RuntimeError(f"{label}: ran {handled} jobs, expected {jobs}")
    firsts = [d["first_wall"] for d in done if d.get("first_wall")]
    span = max(d["end_wall"] for d in done) - min(firsts)
    return {"rate": jobs / span, "cpu": (c1 - c0 + pg_ms) * 1000 / jobs, "pg": pg_ms * 1000 / jobs, **stats}


def w_scale(run: Any, srv: Any, cfg: Any, rec: Any, systems: list[str], procs_list: list[int]) -> None:
    chosen = [s for s in systems if run.SYSTEMS[s][0] in ("jobworker", "graphile") and s != "jobworker-batch500"]
    for c in cfg.concurrencies:
        for procs in procs_list:
            acc: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
            for rep in range(cfg.repeats):
                for system in chosen:
                    jobs = cfg.jobs if "batch" in run.SYSTEMS[system][1] else cfg.default_jobs
                    t = scale_trial(run, srv, system, jobs, procs, c, f"scale-{system}-c{c}-p{procs}-{rep}")
                    for k in ("rate", "cpu", "pg", "wal_bytes_per_job", "wal_syncs_per_1k"):
                        acc[system][k].append(t[k])
                    acc[system]["top"].append(t["top_statements"])
                    top = t["top_statements"][0] if t["top_statements"] else {"query": "?", "ms_per_1k_jobs": 0}
                    h.log(
                        f"scale c={c} procs={procs} {system} rep {rep}: {t['rate']:,.0f} jobs/s, "
                        f"CPU-ms/1k {t['cpu']:.0f}, "
                        f"WAL {t['wal_bytes_per_job']:.0f} B/job, {t['wal_syncs_per_1k']:.0f} syncs/1k; "
                        f"top: {top['query']!r} {top['ms_per_1k_jobs']:.0f} ms/1k"
                    )
            config = {"concurrency": c, "procs": procs}
            for system, m in acc.items():
                rec.add("scale", system, config, "total_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["cpu"])
                rec.add("scale", system, config, "jobs_per_s", "jobs/s", "higher", m["rate"])
                rec.add("scale", system, config, "pg_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["pg"])
                rec.add("scale", system, config, "wal_bytes_per_job", "B/job", "lower", m["wal_bytes_per_job"])
                rec.add("scale", system, config, "wal_syncs_per_1k", "syncs/1k jobs", "lower", m["wal_syncs_per_1k"])
                rec.extra.setdefault("scale_top_statements", {})[f"{system} c={c} procs={procs}"] = m["top"][-1]
