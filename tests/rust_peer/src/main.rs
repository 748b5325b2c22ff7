//! The Rust side of jobworker's interop tests: graphile_worker_rs through its public API only.
//!
//! usage: jobworker-rust-peer COMMAND [ARGS]   (env DATABASE_URL; schema graphile_worker)
//!   migrate                       WorkerUtils::migrate()
//!   add '<JSON specs>'            WorkerUtils::add_raw_job per spec; prints [{id, key}]
//!   worker run|once               a Worker with the `record`, `rust_record` and `slow` tasks
//!   sweep THRESHOLD_MS DELAY_MS   WorkerUtils::sweep_stale_workers; prints {worker_ids, recovered_count}
//!   complete ID...                WorkerUtils::complete_jobs
//!   fail REASON ID...             WorkerUtils::permanently_fail_jobs
//!   reschedule '<JSON>' ID...     WorkerUtils::reschedule_jobs ({runAt, priority, attempts, maxAttempts})
//!   remove KEY                    WorkerUtils::remove_job
//!   cleanup TASK...               WorkerUtils::cleanup (gc_task_identifiers, gc_job_queues,
//!                                 delete_permanently_failed_jobs)
//!   force-unlock WORKER_ID...     WorkerUtils::force_unlock_workers
//!
//! A spec is {task, payload, queueName, runAt, maxAttempts, jobKey, jobKeyMode, priority, flags}, as
//! tests/acceptance/node/add_jobs.js takes it. The tasks write the rows tests/acceptance/acceptance_tasks.py
//! writes to public.acceptance_effects, with runtime 'rust': 'started', then 'done' on success.
//! A payload {"sleep": s} holds the job s seconds between the two; {"fail": "msg"} fails it. `slow`
//! sleeps SLOW_SLEEP seconds (default 0), as the Python `slow` sleeps ACCEPTANCE_SLEEP: one process can
//! be told to hang mid-job and the next to finish at once.
//!
//! `worker` env: RUST_TASKS (comma list, default all three), CONCURRENCY (2), POLL_INTERVAL_MS (200), and
//! the recovery options HEARTBEAT_INTERVAL_MS, SWEEP_INTERVAL_MS, SWEEP_THRESHOLD_MS, RECOVERY_DELAY_MS
//! (any of them set turns recovery on, as graphile_worker's builder does). `worker run` prints
//! "rust worker ready <worker_id>" once it is registered, and stops on SIGTERM/SIGINT.
use std::env;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use graphile_worker::worker_utils::types::{CleanupTask, RescheduleJobOptions};
use graphile_worker::{
    IntoTaskHandlerResult, JobKeyMode, JobSpec, SweepStaleWorkersOptions, TaskHandler,
    WorkerContext, WorkerOptions, WorkerUtils,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const SCHEMA: &str = "graphile_worker";

type Failure = Box<dyn std::error::Error>;

#[derive(Deserialize, Serialize, Clone)]
#[serde(transparent)]
struct Record(Value);

#[derive(Deserialize, Serialize, Clone)]
#[serde(transparent)]
struct RustRecord(Value);

#[derive(Deserialize, Serialize, Clone)]
#[serde(transparent)]
struct Slow(Value);

async fn note(ctx: &WorkerContext, what: &str) -> Result<(), String> {
    let job = ctx.job();
    sqlx::query(
        "insert into public.acceptance_effects (job_id, task, runtime, attempt, note) \
         values ($1, $2, 'rust', $3, $4)",
    )
    .bind(*job.id())
    .bind(job.task_identifier())
    .bind(i32::from(*job.attempts()))
    .bind(what)
    .execute(ctx.pg_pool())
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn record(payload: Value, ctx: WorkerContext) -> Result<(), String> {
    note(&ctx, "started").await?;
    if let Some(seconds) = payload.get("sleep").and_then(Value::as_f64) {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
    if let Some(reason) = payload.get("fail").and_then(Value::as_str) {
        return Err(reason.to_string());
    }
    note(&ctx, "done").await
}

impl TaskHandler for Record {
    const IDENTIFIER: &'static str = "record";
    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        record(self.0, ctx).await
    }
}

impl TaskHandler for RustRecord {
    const IDENTIFIER: &'static str = "rust_record";
    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        record(self.0, ctx).await
    }
}

impl TaskHandler for Slow {
    const IDENTIFIER: &'static str = "slow";
    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let seconds: f64 = env::var("SLOW_SLEEP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        record(json!({ "sleep": seconds }), ctx).await
    }
}

fn millis(name: &str) -> Result<Option<Duration>, Failure> {
    match env::var(name) {
        Ok(v) => {
            Ok(Some(Duration::from_millis(v.parse().map_err(|_| {
                format!("{name} must be milliseconds, got {v:?}")
            })?)))
        }
        Err(_) => Ok(None),
    }
}

async fn connect() -> Result<PgPool, Failure> {
    let url = env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?)
}

fn text(spec: &Value, key: &str) -> Option<String> {
    spec.get(key).and_then(Value::as_str).map(str::to_string)
}

fn job_spec(spec: &Value) -> Result<JobSpec, Failure> {
    let small = |key: &str| spec.get(key).and_then(Value::as_i64).map(|n| n as i16);
    Ok(JobSpec {
        queue_name: text(spec, "queueName"),
        run_at: match text(spec, "runAt") {
            Some(at) => Some(DateTime::parse_from_rfc3339(&at)?.with_timezone(&Utc)),
            None => None,
        },
        max_attempts: small("maxAttempts"),
        priority: small("priority"),
        job_key: text(spec, "jobKey"),
        job_key_mode: match text(spec, "jobKeyMode").as_deref() {
            None => None,
            Some("replace") => Some(JobKeyMode::Replace),
            Some("preserve_run_at") => Some(JobKeyMode::PreserveRunAt),
            Some("unsafe_dedupe") => Some(JobKeyMode::UnsafeDedupe),
            Some(other) => return Err(format!("unknown jobKeyMode {other:?}").into()),
        },
        flags: spec.get("flags").and_then(Value::as_array).map(|flags| {
            flags
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        }),
    })
}

fn ids(args: &[String]) -> Result<Vec<i64>, Failure> {
    args.iter()
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| format!("job id must be an integer, got {a:?}").into())
        })
        .collect()
}

async fn worker(mode: &str) -> Result<(), Failure> {
    let pool = connect().await?;
    let wanted = env::var("RUST_TASKS").unwrap_or_else(|_| "record,rust_record,slow".into());
    let concurrency: usize = env::var("CONCURRENCY")
        .unwrap_or_else(|_| "2".into())
        .parse()?;
    let poll = millis("POLL_INTERVAL_MS")?.unwrap_or(Duration::from_millis(200));
    let mut options = WorkerOptions::default()
        .schema(SCHEMA)
        .concurrency(concurrency)
        .poll_interval(poll)
        .pg_pool(pool);
    for task in wanted.split(',').filter(|t| !t.is_empty()) {
        options = match task {
            "record" => options.define_job::<Record>(),
            "rust_record" => options.define_job::<RustRecord>(),
            "slow" => options.define_job::<Slow>(),
            other => return Err(format!("unknown task {other:?}").into()),
        };
    }
    if let Some(d) = millis("HEARTBEAT_INTERVAL_MS")? {
        options = options.heartbeat_interval(d);
    }
    if let Some(d) = millis("SWEEP_INTERVAL_MS")? {
        options = options.sweep_interval(d);
    }
    if let Some(d) = millis("SWEEP_THRESHOLD_MS")? {
        options = options.sweep_threshold(d);
    }
    if let Some(d) = millis("RECOVERY_DELAY_MS")? {
        options = options.recovery_delay(d);
    }
    let worker = options.init().await?;
    match mode {
        "once" => worker.run_once().await?,
        "run" => {
            println!("rust worker ready {}", worker.worker_id());
            worker.run().await?;
        }
        other => return Err(format!("worker takes run|once, got {other:?}").into()),
    }
    Ok(())
}

async fn command(args: &[String]) -> Result<(), Failure> {
    let (verb, rest) = args
        .split_first()
        .ok_or("usage: jobworker-rust-peer COMMAND [ARGS]")?;
    if verb == "worker" {
        return worker(rest.first().map(String::as_str).unwrap_or("run")).await;
    }
    let utils = WorkerUtils::new(connect().await?, SCHEMA);
    match verb.as_str() {
        "migrate" => utils.migrate().await?,
        "add" => {
            let specs: Vec<Value> =
                serde_json::from_str(rest.first().ok_or("add takes '<JSON specs>'")?)?;
            let mut out = Vec::new();
            for spec in &specs {
                let task = text(spec, "task").ok_or("each spec needs a task")?;
                let payload = spec.get("payload").cloned().unwrap_or_else(|| json!({}));
                let job = utils.add_raw_job(&task, payload, job_spec(spec)?).await?;
                out.push(json!({"id": job.id(), "key": job.key()}));
            }
            println!("{}", Value::Array(out));
        }
        "sweep" => {
            let threshold = rest
                .first()
                .ok_or("sweep takes THRESHOLD_MS DELAY_MS")?
                .parse()?;
            let delay = rest
                .get(1)
                .ok_or("sweep takes THRESHOLD_MS DELAY_MS")?
                .parse()?;
            let result = utils
                .sweep_stale_workers(SweepStaleWorkersOptions {
                    sweep_threshold: Some(Duration::from_millis(threshold)),
                    recovery_delay: Some(Duration::from_millis(delay)),
                    dry_run: false,
                })
                .await?;
            println!(
                "{}",
                json!({"worker_ids": result.worker_ids, "recovered_count": result.recovered_count})
            );
        }
        "complete" => {
            let done = utils.complete_jobs(&ids(rest)?).await?;
            println!(
                "{}",
                json!(done.iter().map(|j| *j.id()).collect::<Vec<_>>())
            );
        }
        "fail" => {
            let (reason, rest) = rest.split_first().ok_or("fail takes REASON ID...")?;
            let failed = utils.permanently_fail_jobs(&ids(rest)?, reason).await?;
            println!(
                "{}",
                json!(failed.iter().map(|j| *j.id()).collect::<Vec<_>>())
            );
        }
        "reschedule" => {
            let (options, rest) = rest
                .split_first()
                .ok_or("reschedule takes '<JSON>' ID...")?;
            let options: Value = serde_json::from_str(options)?;
            let run_at = match text(&options, "runAt") {
                Some(at) => Some(DateTime::parse_from_rfc3339(&at)?.with_timezone(&Utc)),
                None => None,
            };
            let small = |key: &str| options.get(key).and_then(Value::as_i64).map(|n| n as i16);
            let moved = utils
                .reschedule_jobs(
                    &ids(rest)?,
                    RescheduleJobOptions {
                        run_at,
                        priority: small("priority"),
                        attempts: small("attempts"),
                        max_attempts: small("maxAttempts"),
                    },
                )
                .await?;
            println!(
                "{}",
                json!(moved.iter().map(|j| *j.id()).collect::<Vec<_>>())
            );
        }
        "remove" => {
            utils
                .remove_job(rest.first().ok_or("remove takes KEY")?)
                .await?
        }
        "cleanup" => {
            let tasks = rest
                .iter()
                .map(|t| match t.as_str() {
                    "gc_task_identifiers" => Ok(CleanupTask::GcTaskIdentifiers),
                    "gc_job_queues" => Ok(CleanupTask::GcJobQueues),
                    "delete_permanently_failed_jobs" => {
                        Ok(CleanupTask::DeletePermanentlyFailedJobs)
                    }
                    other => Err(format!("unknown cleanup task {other:?}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            utils.cleanup(&tasks).await?
        }
        "force-unlock" => {
            let workers: Vec<&str> = rest.iter().map(String::as_str).collect();
            utils.force_unlock_workers(&workers).await?
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match command(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
