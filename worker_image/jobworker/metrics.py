"""Every Prometheus metric the runtime exports, in one place. Labels: task, queue, state."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_STARTED = Counter("jobworker_jobs_started_total", "Jobs this process started.", ["task"])
JOBS_COMPLETED = Counter("jobworker_jobs_completed_total", "Jobs that finished successfully.", ["task"])
JOBS_FAILED = Counter(
    "jobworker_jobs_failed_total",
    "Job attempts that failed; permanent is true when no retry follows.",
    ["task", "permanent"],
)
JOBS_RETURNED = Counter("jobworker_jobs_returned_total", "Jobs given back unfinished at shutdown.", ["task"])
JOB_DURATION = Histogram(
    "jobworker_job_duration_seconds",
    "Handler run time.",
    ["task"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)
RESULTS_FENCED = Counter(
    "jobworker_results_fenced_total",
    "Job results not written because the job was no longer locked by this worker (swept, force-unlocked).",
    ["task", "kind"],
)
WORKER_FENCED = Counter(
    "jobworker_worker_fenced_total",
    "Times this worker stopped claiming because its heartbeat failed for over half the sweep threshold.",
)
JOBS_RUNNING = Gauge("jobworker_jobs_running", "Jobs running in this process now.")
SCHEDULES_FIRED = Counter("jobworker_schedule_fires_total", "Cron ticks this scheduler enqueued.", ["schedule"])
SCHEDULE_ERRORS = Counter(
    "jobworker_schedule_errors_total", "Schedule ticks that failed (the other schedules still fired).", ["schedule"]
)
HTTP_DELIVERIES = Counter(
    "jobworker_http_deliveries_total", "Deliveries to the HTTP job endpoint by status code.", ["task", "status"]
)
