"""Issue #13's targets, checked against one run's rows (ratios within the run are what count).

Nothing passes or fails on time: the result files record which targets were met, and by what ratio.
"""

from __future__ import annotations

from typing import Any

BATCH = ("jobworker-batch", "jobworker-batch500")


def find(rows: list[dict[str, Any]], workload: str, system: str, metric: str, **config: Any) -> dict[str, Any] | None:
    for r in rows:
        if (r["workload"], r["system"], r["metric"]) == (workload, system, metric) and all(
            r["config"].get(k) == v for k, v in config.items()
        ):
            return r
    return None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] else None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def check(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "measured": value, "goal": goal, "met": None if value is None else ok})

    def vs(workload: str, a: str, b: str, metric: str = "jobs_per_s", **config: Any) -> float | None:
        return _ratio(find(rows, workload, a, metric, **config), find(rows, workload, b, metric, **config))

    for workload in ("drain", "drain_backlog"):
        for c in (10, 24):
            for jw in BATCH:
                r = vs(workload, jw, "graphile-batch", concurrency=c)
                check(f"{workload} c={c} {jw} vs graphile-batch", r, ">= 1.5x", r is not None and r >= 1.5)
                r = vs(workload, jw, "graphile-batch", "total_cpu_ms_per_1k", concurrency=c)
                check(f"{workload} c={c} {jw} CPU/1k jobs vs graphile-batch", r, "< 1.0x", r is not None and r < 1.0)
    for c in (10, 24):
        r = vs("drain", "jobworker", "graphile", concurrency=c)
        check(f"drain c={c} default vs graphile default", r, ">= 3x", r is not None and r >= 3.0)
        r = vs("drain", "jobworker", "graphile", "total_cpu_ms_per_1k", concurrency=c)
        check(f"drain c={c} default CPU/1k jobs vs graphile", r, "< 1.0x", r is not None and r < 1.0)
    for api, goal in (("batch (1,000 per call)", 1.2), ("single add_job", 1.0)):
        r = vs("enqueue", "jobworker", "graphile", api=api)
        check(f"enqueue {api} vs graphile", r, f">= {goal:g}x", r is not None and r >= goal)
        r = vs("enqueue", "jobworker", "graphile", "total_cpu_ms_per_1k", api=api)
        check(f"enqueue {api} CPU/1k jobs vs graphile", r, "< 1.0x", r is not None and r < 1.0)
    for system, ref in (("jobworker", "graphile"), ("jobworker-batch", "graphile-batch")):
        p50, p99 = (find(rows, "latency", system, f"latency_{k}_ms") for k in ("p50", "p99"))
        g50 = find(rows, "latency", ref, "latency_p50_ms")
        if p50:
            check(f"{system} latency p50 (ms)", p50["median"], "<= 1.5 ms", p50["median"] <= 1.5)
        if p50 and g50:
            r = _ratio(p50, g50)
            check(f"{system} latency p50 vs {ref}", r, "<= 1.0x", r is not None and r <= 1.0)
        if p99:
            check(f"{system} latency p99 (ms)", p99["median"], "<= 5 ms", p99["median"] <= 5.0)
        r = _ratio(
            find(rows, "drain_big", system, "jobs_per_s"), find(rows, "drain", system, "jobs_per_s", concurrency=10)
        )
        if r is not None:
            check(f"{system} drain with the big table vs empty", r, ">= 0.8x", r >= 0.8)
    rss = find(rows, "memory", "jobworker", "rss_idle_mib")
    if rss:
        check("idle worker RSS (MiB)", rss["median"], "< 80 MiB", rss["median"] < 80)
    return out


def pgbench_fractions(rows: list[dict[str, Any]]) -> list[str]:
    """Each drain figure as a fraction of pgbench -S / -N (1 and 10 clients) on the same server, same run."""
    bench = {
        (r["config"]["mode"], r["config"]["clients"]): r["median"]
        for r in rows
        if r["workload"] == "pgbench" and r["metric"] == "tps"
    }
    if not bench:
        return []
    keys = sorted(bench)
    head = "| drain | jobs/s | " + " | ".join(f"÷ pgbench {m} c={c} ({bench[(m, c)]:,.0f} tps)" for m, c in keys) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(keys)]
    for r in rows:
        if r["workload"] in ("drain", "drain_backlog", "scale") and r["metric"] == "jobs_per_s":
            cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items() if k != "jobs")
            fr = " | ".join(f"{r['median'] / bench[k]:.2f}" for k in keys)
            lines.append(f"| {r['workload']} {r['system']} {cfg} | {r['median']:,.0f} | {fr} |")
    return lines
