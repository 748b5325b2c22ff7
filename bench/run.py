"""`make bench`: jobworker against graphile-worker 0.17, pgqueuer and procrastinate on one PostgreSQL.

    .venv/bin/python bench/run.py            # workloads 1-4, ~15-20 min on 2 cores
    .venv/bin/python bench/run.py --quick    # smoke: fewer jobs, 1 repeat (BENCH_QUICK=1 does the same)
    .venv/bin/python bench/run.py --only drain,latency --systems jobworker,graphile

One throwaway PostgreSQL (the embedded one, or BENCH_DATABASE_URL) serves every peer in the run.
graphile-worker installs its own schema (``--schema-only``) in a template database, jobworker's
migrations are applied on top (they add jobworker's own tables only), so graphile-worker and
jobworker claim from byte-identical tables and indexes. Every trial gets a fresh copy of a template
database, so no trial sees another's dead rows. Results: bench/results/latest.{jsonl,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import scale
import targets as tgt

RESULTS = h.BENCH / "results"
GRAPHILE_TEMPLATE = "tpl_graphile"
BIG_TEMPLATE = "tpl_graphile_big"
TEMPLATES = {"pgqueuer": "tpl_pgqueuer", "procrastinate": "tpl_procrastinate"}

# system -> (family, variant)
SYSTEMS: dict[str, tuple[str, str]] = {
    "jobworker": ("jobworker", "default"),
    "jobworker-batch": ("jobworker", "batch"),
    "jobworker-batch500": ("jobworker", "batch500"),
    "graphile": ("graphile", "default"),
    "graphile-batch": ("graphile", "batch"),
    "pgqueuer": ("pgqueuer", "default"),
    "procrastinate": ("procrastinate", "default"),
}
GRAPHILE_LOCAL_QUEUE_SIZE = 500  # graphile_runner.mjs: localQueue {size: 500}
ENQUEUE_SYSTEMS = ["jobworker", "graphile", "pgqueuer", "procrastinate"]


class Config:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.repeats = 1 if quick else 3
        self.jobs = 2_000 if quick else 20_000
        # Default-mode drains and single adds wait on a WAL flush per claim or add (~9 ms on this host's
        # disk with fsync on): fewer jobs keep a trial to seconds; rates, not counts, are compared.
        self.default_jobs = 2_000 if quick else 3_000
        self.single_jobs = 300 if quick else 500
        self.concurrencies = [10, 24]
        self.latency_jobs = 60 if quick else 300
        self.big_future = 50_000 if quick else 1_000_000
        self.big_failed = 5_000 if quick else 100_000
        self.backlog_jobs = 10_000 if quick else 100_000


def reference(system: str) -> str:
    if system not in SYSTEMS:
        return system  # pgbench: no graphile-worker figure to divide by
    return "graphile-batch" if SYSTEMS[system][1].startswith("batch") else "graphile"


# -- argv for each peer -----------------------------------------------------------------------
def runner_argv(system: str, mode: str, url: str, *, jobs: int, concurrency: int = 10, extra: list[str] | None = None):
    family, variant = SYSTEMS[system]
    common = ["--db", url, "--mode", mode, "--jobs", str(jobs), "--concurrency", str(concurrency)]
    common += ["--variant", "batch" if variant.startswith("batch") else variant, *(extra or [])]
    if family == "jobworker":
        if variant == "batch500":
            # The same local-queue size as graphile-worker's batched preset, so both over-claim alike;
            # "jobworker-batch" runs jobworker's own batch defaults.
            common += ["--batch-size", str(GRAPHILE_LOCAL_QUEUE_SIZE)]
        return [str(h.MAIN_PY), str(h.PEERS / "jobworker_runner.py"), *common]
    if family == "graphile":
        # Its best documented configuration: a silent logger (the default one prints a line per job).
        return [h.NODE, str(h.PEERS / "graphile_runner.mjs"), *common, "--silent-logger"]
    return [h.peer_python(family), str(h.PEERS / f"{family}_runner.py"), *common]


def node_env() -> dict[str, str]:
    return {"GRAPHILE_WORKER_PATH": str(h.NODE_DIR / "node_modules" / "graphile-worker")}


# -- templates --------------------------------------------------------------------------------
def build_templates(srv: h.Server, cfg: Config, systems: set[str], big: bool) -> None:
    families = {SYSTEMS[s][0] for s in systems}
    if families & {"jobworker", "graphile"}:
        srv.drop_database(GRAPHILE_TEMPLATE)
        srv.create_database(name=GRAPHILE_TEMPLATE)
        url = srv.url_for(GRAPHILE_TEMPLATE)
        cli = h.NODE_DIR / "node_modules" / "graphile-worker" / "dist" / "cli.js"
        h.run_to_end([h.NODE, str(cli), "--schema-only", "-c", url], "graphile-schema-only")
        from jobworker import migrate

        asyncio.run(migrate.migrate(url))
        if big:
            build_big_template(srv, cfg)
    for family, template in TEMPLATES.items():
        if family in families:
            srv.drop_database(template)
            srv.create_database(name=template)
            h.run_to_end(runner_argv(family, "install", srv.url_for(template), jobs=0), f"{family}-install")


def build_big_template(srv: h.Server, cfg: Config) -> None:
    h.log(f"building the big table: {cfg.big_future:,} future jobs + {cfg.big_failed:,} permanently failed")
    srv.drop_database(BIG_TEMPLATE)
    srv.create_database(GRAPHILE_TEMPLATE, name=BIG_TEMPLATE)
    t0 = time.monotonic()
    for sql in (
        "insert into graphile_worker._private_tasks (identifier) values ('noop') on conflict do nothing",
        f"""insert into graphile_worker._private_jobs (task_id, payload, run_at, max_attempts)
            select t.id, json_build_object('i', g), now() + interval '30 days' + (g % 86400) * interval '1 second', 25
            from generate_series(1, {cfg.big_future}) g,
                 (select id from graphile_worker._private_tasks where identifier = 'noop') t""",
        f"""insert into graphile_worker._private_jobs (task_id, payload, run_at, attempts, max_attempts, last_error)
            select t.id, json_build_object('i', g), now() - interval '1 day', 25, 25, 'Error: permanently failed'
            from generate_series(1, {cfg.big_failed}) g,
                 (select id from graphile_worker._private_tasks where identifier = 'noop') t""",
        "vacuum analyze graphile_worker._private_jobs",
    ):
        srv.execute(sql, BIG_TEMPLATE)
    h.log(f"big table ready in {time.monotonic() - t0:.1f}s")


def prefill(srv: h.Server, system: str, db: str, url: str, jobs: int) -> int:
    """Put ``jobs`` runnable no-op jobs in the queue; returns the first job id (graphile schema) or 0."""
    family = SYSTEMS[system][0]
    min_id = 0
    if family in ("jobworker", "graphile"):
        # graphile's own add_jobs() SQL function, so both claim the very same rows.
        min_id = int(srv.execute("select coalesce(max(id), 0) + 1 from graphile_worker._private_jobs", db)[0][0])
        for start in range(0, jobs, 5_000):
            end = min(start + 5_000, jobs)
            srv.execute(
                f"""select count(*) from graphile_worker.add_jobs(array(
                      select row('noop', json_build_object('i', g), null, null, null, null, null, null)
                             ::graphile_worker.job_spec
                      from generate_series({start}, {end - 1}) g))""",
                db,
            )
    else:
        h.run_to_end(runner_argv(system, "prefill", url, jobs=jobs), f"{system}-prefill")
    srv.execute("vacuum analyze", db)  # the steady state autovacuum would give; the same for every peer
    return min_id


# -- workloads ------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # readings beside the figures (pg_stat_statements per scale trial)

    def add(self, workload: str, system: str, config: dict[str, Any], metric: str, unit: str, better: str, values):
        values = [v for v in values if v is not None]
        if not values:
            return
        row = {"workload": workload, "system": system, "config": config, "metric": metric, "unit": unit}
        row |= {"better": better, **h.summary(values), "values": values, "n": len(values)}
        self.rows.append(row)

    def finish(self) -> None:
        index = {
            (r["workload"], r["system"], json.dumps(r["config"], sort_keys=True), r["metric"]): r for r in self.rows
        }
        for r in self.rows:
            ref_system = reference(r["system"]) if r["workload"] != "enqueue" else "graphile"
            ref = index.get((r["workload"], ref_system, json.dumps(r["config"], sort_keys=True), r["metric"]))
            r["ref"] = ref_system
            r["vs_graphile"] = r["median"] / ref["median"] if ref and ref["median"] else None


def one_trial(runner: h.Runner, srv: h.Server, *, ready_timeout: float = 120) -> tuple[dict[str, Any], float, float]:
    runner.start()
    try:
        runner.expect("READY", ready_timeout)
        pg = h.PgCpu(srv)
        c0 = h.cpu_ms(runner.pid) or 0.0
        runner.send("GO")
        data = runner.expect("DONE", 900)
        c1 = h.cpu_ms(runner.pid) or 0.0
        pg_ms = pg.delta()
    finally:
        runner.close()
    return data, c1 - c0, pg_ms if pg_ms is not None else float("nan")


def w_enqueue(srv: h.Server, cfg: Config, rec: Recorder, systems: list[str]) -> None:
    for mode, jobs in (("enqueue-batch", cfg.jobs), ("enqueue-single", cfg.single_jobs)):
        results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rep in range(cfg.repeats):
            for system in [s for s in ENQUEUE_SYSTEMS if s in systems]:
                template = TEMPLATES.get(SYSTEMS[system][0], GRAPHILE_TEMPLATE)
                with srv.fresh(template) as (_, url):
                    argv = runner_argv(system, mode, url, jobs=jobs)
                    data, wms, pms = one_trial(h.Runner(argv, f"{system}-{mode}-{rep}", node_env()), srv)
                rate = data["jobs"] / data["seconds"]
                results[system]["rate"].append(rate)
                results[system]["cpu"].append((wms + pms) * 1000 / jobs)
                h.log(f"{mode} {system} rep {rep}: {rate:,.0f} jobs/s, CPU-ms/1k jobs {(wms + pms) * 1000 / jobs:.0f}")
        for system, m in results.items():
            api = "batch (1,000 per call)" if mode == "enqueue-batch" else "single add_job"
            config = {"api": api, "jobs": jobs}
            rec.add("enqueue", system, config, "total_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["cpu"])
            rec.add("enqueue", system, config, "jobs_per_s", "jobs/s", "higher", m["rate"])


def drain_trial(srv: h.Server, system: str, jobs: int, concurrency: int, label: str, big: bool = False):
    family = SYSTEMS[system][0]
    if family == "procrastinate":
        jobs = min(jobs, 1_000)  # 20-90 jobs/s under fsync here: a rate needs no 3-minute trial
    template = BIG_TEMPLATE if big else TEMPLATES.get(family, GRAPHILE_TEMPLATE)
    with srv.fresh(template, file_copy=big) as (db, url):
        min_id = prefill(srv, system, db, url, jobs)
        argv = runner_argv(system, "drain", url, jobs=jobs, concurrency=concurrency, extra=["--min-id", str(min_id)])
        data, worker_ms, pg_ms = one_trial(h.Runner(argv, label, node_env()), srv)
    if data["handled"] != jobs:
        raise RuntimeError(f"{label}: ran {data['handled']} jobs, expected {jobs}")
    return jobs / data["steady_seconds"], jobs / data["seconds"], worker_ms * 1000 / jobs, pg_ms * 1000 / jobs


def w_drain(
    srv: h.Server, cfg: Config, rec: Recorder, systems: list[str], *, big: bool = False, backlog: bool = False
) -> None:
    workload = "drain_big" if big else "drain_backlog" if backlog else "drain"
    # The 100k backlog runs at c=24 only: each of its trials takes ~45 s under fsync on this host.
    concurrencies = [10] if big else [24] if backlog else cfg.concurrencies
    jobs = cfg.backlog_jobs if backlog else cfg.jobs
    default_jobs = jobs if backlog or big else cfg.default_jobs
    chosen = [s for s in systems if not big or SYSTEMS[s][0] in ("jobworker", "graphile")]
    if backlog:
        chosen = [s for s in chosen if SYSTEMS[s][0] in ("jobworker", "graphile") and "batch" in SYSTEMS[s][1]]
    for c in concurrencies:
        acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rep in range(cfg.repeats):
            for system in chosen:
                n = jobs if "batch" in SYSTEMS[system][1] else default_jobs
                try:
                    steady, total, wms, pms = drain_trial(srv, system, n, c, f"{workload}-{system}-c{c}-{rep}", big)
                except RuntimeError as exc:
                    h.log(f"{workload} c={c} {system} rep {rep} FAILED, left out: {str(exc).splitlines()[0]}")
                    continue
                for k, v in (("steady", steady), ("total", total), ("worker", wms), ("pg", pms), ("cpu", wms + pms)):
                    acc[system][k].append(v)
                h.log(
                    f"{workload} c={c} {system} rep {rep}: {steady:,.0f} jobs/s, "
                    f"CPU-ms/1k jobs: worker {wms:.0f}, pg {pms:.0f}"
                )
        config: dict[str, Any] = {"concurrency": c}
        if big:
            config |= {"future_jobs": cfg.big_future, "failed_jobs": cfg.big_failed}
        for system, m in acc.items():
            rec.add(workload, system, config, "total_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["cpu"])
            rec.add(workload, system, config, "jobs_per_s", "jobs/s", "higher", m["steady"])
            rec.add(workload, system, config, "jobs_per_s_incl_startup", "jobs/s", "higher", m["total"])
            rec.add(workload, system, config, "worker_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["worker"])
            rec.add(workload, system, config, "pg_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["pg"])


def w_latency(srv: h.Server, cfg: Config, rec: Recorder, systems: list[str]) -> None:
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rep in range(cfg.repeats):
        for system in systems:
            family = SYSTEMS[system][0]
            template = TEMPLATES.get(family, GRAPHILE_TEMPLATE)
            enq_system = "jobworker" if family in ("jobworker", "graphile") else system
            try:
                rss, hwm, data, enq_data = latency_trial(srv, cfg, acc, system, enq_system, template, rep)
            except RuntimeError as exc:
                # One peer's failed repeat (e.g. procrastinate missing jobs under load) must not lose the run.
                h.log(f"latency {system} rep {rep} FAILED, left out: {str(exc).splitlines()[0]}")
                continue
            lat = data["latencies_ms"]  # add call -> start: includes the enqueuer's own commit
            committed = enq_data["committed"]
            c2s = [
                (float(t) - committed[int(i)]) * 1000 for i, t in data["starts"].items() if 0 <= int(i) < len(committed)
            ]
            for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                acc[system][key].append(h.percentile(c2s, q))
                acc[system]["add_" + key].append(h.percentile(lat, q))
            acc[system]["rss_idle"].append((rss or 0) / 1024)
            acc[system]["rss_peak"].append((hwm or 0) / 1024)
            h.log(
                f"latency {system} rep {rep}: p50 {acc[system]['p50'][-1]:.2f} p95 {acc[system]['p95'][-1]:.2f} "
                f"p99 {acc[system]['p99'][-1]:.2f} ms; idle RSS {(rss or 0) / 1024:.0f} MiB"
            )
    config = {"jobs": cfg.latency_jobs, "gap_ms": "5-25", "concurrency": 10}
    for system, m in acc.items():
        rec.add("latency", system, config, "total_cpu_ms_per_1k", "CPU-ms/1k jobs", "lower", m["cpu"])
        for key in ("p50", "p95", "p99"):
            rec.add("latency", system, config, f"latency_{key}_ms", "ms commit->start", "lower", m[key])
        for key in ("p50", "p99"):
            rec.add("latency", system, config, f"add_to_start_{key}_ms", "ms add call->start", "lower", m["add_" + key])
        rec.add("memory", system, {"state": "idle, after start"}, "rss_idle_mib", "MiB", "lower", m["rss_idle"])
        rec.add("memory", system, {"state": "peak over the latency run"}, "rss_peak_mib", "MiB", "lower", m["rss_peak"])


def latency_trial(
    srv: h.Server, cfg: Config, acc: Any, system: str, enq_system: str, template: str, rep: int
) -> tuple[Any, Any, Any, Any]:
    """One latency repeat: a worker, and an enqueuer adding one job at a time; RuntimeError if it fails."""
    with srv.fresh(template) as (_, url):
        worker = h.Runner(
            runner_argv(system, "latency-worker", url, jobs=cfg.latency_jobs), f"lat-{system}-{rep}", node_env()
        )
        enq = h.Runner(
            runner_argv(enq_system, "latency-enqueue", url, jobs=cfg.latency_jobs, extra=["--seed", str(rep)]),
            f"lat-enq-{system}-{rep}",
        )
        worker.start()
        try:
            worker.expect("READY", 120)
            time.sleep(1.0)
            rss = h.rss_kb(worker.pid)
            enq.start()
            enq.expect("READY", 120)
            pg = h.PgCpu(srv)
            c0 = h.cpu_ms(worker.pid) or 0.0
            worker.send("GO")
            enq.send("GO")
            enq_data = enq.expect("DONE", 300)
            data = worker.expect("DONE", 60)
            # Worker process + every server process (the enqueuer's backend too, the same for all).
            acc[system]["cpu"].append(
                ((h.cpu_ms(worker.pid) or 0.0) - c0 + (pg.delta() or 0.0)) * 1000 / cfg.latency_jobs
            )
            hwm = h.rss_kb(worker.pid, "VmHWM")
        finally:
            enq.close()
            worker.close()
    return rss, hwm, data, enq_data


# -- output ---------------------------------------------------------------------------------
def fmt(v: float | None, unit: str = "") -> str:
    if v is None or v != v:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| workload | config | metric | system | median | min-max | x graphile |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items() if k not in ("jobs",))
        ratio = f"{r['vs_graphile']:.2f}x" if r.get("vs_graphile") is not None else "n/a"
        ref = "" if r["ref"] == "graphile" else f" (vs {r['ref']})"
        out.append(
            f"| {r['workload']} | {cfg} | {r['metric']} ({r['unit']}) | {r['system']} | {fmt(r['median'])} | "
            f"{fmt(r['min'])}-{fmt(r['max'])} | {ratio}{ref} |"
        )
    return "\n".join(out)


def write(rec: Recorder, meta: dict[str, Any], name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tg = tgt.targets(rec.rows)
    jsonl = RESULTS / f"{name}.jsonl"
    with jsonl.open("w") as f:
        f.write(json.dumps({"kind": "meta", **meta, "extra": rec.extra}) + "\n")
        for r in rec.rows:
            f.write(json.dumps({"kind": "result", **r}) + "\n")
        for t in tg:
            f.write(json.dumps({"kind": "target", **t}) + "\n")
    m = meta["machine"]
    lines = [
        f"# jobworker benchmark — {meta['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}; "
        f"Python {m['python']}, node {m['node']}; PostgreSQL {meta['postgres']} ({meta['database']}; "
        f"{meta['settings']}). "
        f"Host load average at start/end: {meta['loadavg_start'][0]:.1f} / {meta['loadavg_end'][0]:.1f} "
        f"(shared host); wall time {meta['wall_seconds']} s.",
        f"Peers: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. "
        f"Mode: {'quick' if meta['quick'] else 'full'}, {meta['repeats']} repeat(s); median and min-max shown. "
        "`x graphile` divides by graphile-worker's median in the same run (default vs default, batch vs batch).",
        "",
        table(rec.rows),
        "",
        "## Targets",
        "",
        "| target | measured | goal | met |",
        "|---|---:|---|---|",
    ]
    for t in tg:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {fmt(t['measured'])} | {t['goal']} | {met} |")
    fractions = tgt.pgbench_fractions(rec.rows)
    if fractions:
        lines += ["", "## Drain as a fraction of pgbench on the same server", "", *fractions]
    if rec.extra.get("scale_top_statements"):
        lines += ["", "## Scale-out: top statements by total execution time (last repeat, per 1,000 jobs)", ""]
        for key, top in rec.extra["scale_top_statements"].items():
            parts = "; ".join(f"`{t['query']}` {t['ms_per_1k_jobs']:.0f} ms ({t['calls']} calls)" for t in top)
            lines.append(f"- {key}: {parts}")
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    p.add_argument(
        "--only",
        default="pgbench,enqueue,drain,backlog,latency,scale,big",
        help="comma list: pgbench,enqueue,drain,backlog,latency,scale,big",
    )
    p.add_argument(
        "--server",
        default="system",
        choices=["system", "embedded"],
        help="system: the distribution's PostgreSQL, fsync on (the headline); embedded: fsync off",
    )
    p.add_argument("--fsync-off", action="store_true", help="system server with fsync and synchronous_commit off")
    p.add_argument("--procs", default="1,2,4", help="scale-out: worker process counts")
    p.add_argument("--scale-systems", default="jobworker,graphile", help="scale-out: which systems")
    p.add_argument("--pgbench-seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=None, help="override the repeats (exploration)")
    p.add_argument("--concurrencies", default=None, help="override, e.g. 24 (exploration)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    p.add_argument("--name", default="latest", help="results file name under bench/results/")
    args = p.parse_args()
    cfg = Config(args.quick)
    if args.repeats:
        cfg.repeats = args.repeats
    if args.concurrencies:
        cfg.concurrencies = [int(c) for c in args.concurrencies.split(",")]
    only = set(args.only.split(","))
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    families = {SYSTEMS[s][0] for s in systems}
    started = time.monotonic()
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=h.ROOT)
    versions: dict[str, str] = {"jobworker": f"worktree at {sha.stdout.strip() or '?'}"}
    if "graphile" in families:
        versions["graphile-worker"] = h.ensure_node()
    for family in ("pgqueuer", "procrastinate"):
        if family in families:
            versions[family] = h.ensure_venv(family)
    rec = Recorder()
    with h.server(args.server) as srv:
        durable = args.server == "system" and not args.fsync_off
        if args.server == "system":
            import syspg

            syspg.set_durable(srv.admin_url, durable)
        settings = srv.execute(
            "select string_agg(name || '=' || setting, ', ' order by name) from pg_settings "
            "where name in ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'wal_level')"
        )[0][0]
        meta = {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": h.machine(),
            "postgres": srv.version,
            "database": (
                "BENCH_DATABASE_URL"
                if os.environ.get("BENCH_DATABASE_URL")
                else "embedded (fsync=off)"
                if srv.embedded is not None
                else "system PostgreSQL, private cluster"
            ),
            "settings": settings,
            "durable": durable,
            "versions": versions,
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "loadavg_start": os.getloadavg(),
        }
        build_templates(srv, cfg, set(systems), big="big" in only)

        def save() -> Path:
            # After every workload: a crash later in a 30-minute run keeps what was measured.
            rec.finish()
            meta["wall_seconds"] = round(time.monotonic() - started)
            meta["loadavg_end"] = os.getloadavg()
            return write(rec, meta, args.name)

        chosen = [s for s in systems if s in args.scale_systems.split(",")]
        procs = [int(n) for n in args.procs.split(",")]
        workloads = [
            ("pgbench", lambda: scale.w_pgbench(srv, cfg, rec, 2.0 if cfg.quick else args.pgbench_seconds)),
            ("enqueue", lambda: w_enqueue(srv, cfg, rec, systems)),
            ("drain", lambda: w_drain(srv, cfg, rec, systems)),
            ("backlog", lambda: w_drain(srv, cfg, rec, systems, backlog=True)),
            ("latency", lambda: w_latency(srv, cfg, rec, systems)),
            ("scale", lambda: scale.w_scale(sys.modules[__name__], srv, cfg, rec, chosen, procs)),
            ("big", lambda: w_drain(srv, cfg, rec, systems, big=True)),
        ]
        for name, workload in workloads:
            if name in only:
                workload()
                save()
    md = save()
    print(md.read_text())
    h.log(f"done in {meta['wall_seconds']}s; results in {md} and {md.with_suffix('.jsonl')}")


if __name__ == "__main__":
    main()
