// graphile-worker 0.17 under benchmark, through its documented API: run() and makeWorkerUtils().
// Same stdin/stdout protocol as bench/peers/common.py (@@BENCH READY / GO / DONE / EXIT).
//
// Configurations (both from graphile-worker's own docs):
//   default: run({ concurrency, maxPoolSize }) - maxPoolSize = max(10, concurrency + 2), as the docs
//            recommend ("10 or concurrentJobs + 2, whichever is larger").
//   batch:   the docs' performance preset: localQueue { size: 500 }, completeJobBatchDelay 0,
//            failJobBatchDelay 0, same maxPoolSize.
// Logging: --silent-logger (what bench/run.py passes, graphile's best configuration) installs a Logger
// whose factory returns a no-op for every scope; without it, graphile's default logger prints a line per job.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const workerPath = process.env.GRAPHILE_WORKER_PATH;
const { run, makeWorkerUtils } = require(workerPath || "graphile-worker");

const { values: args } = parseArgs({
  options: {
    db: { type: "string" },
    mode: { type: "string" },
    jobs: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "10" },
    variant: { type: "string", default: "default" },
    chunk: { type: "string", default: "1000" },
    seed: { type: "string", default: "6" },
    "min-id": { type: "string", default: "0" },
    "poll-interval": { type: "string" },
    "silent-logger": { type: "boolean", default: false },
    procs: { type: "string", default: "1" },
  },
});
const N = Number(args.jobs);
const C = Number(args.concurrency);
const CHUNK = Number(args.chunk);
const MIN_ID = Number(args["min-id"]);
const wallNow = () => (performance.timeOrigin + performance.now()) / 1000; // seconds, sub-ms
const perf = () => performance.now() / 1000;

const lines = createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
lines.on("line", (l) => (waiters.length ? waiters.shift()(l.trim()) : pending.push(l.trim())));
const readLine = () => new Promise((res) => (pending.length ? res(pending.shift()) : waiters.push(res)));
const say = (kind, data) =>
  process.stdout.write(`@@BENCH ${kind}${data === undefined ? "" : " " + JSON.stringify(data)}\n`);
async function handshake() {
  say("READY");
  const l = await readLine();
  if (l !== "GO") throw new Error(`expected GO, got ${l}`);
}
async function finish(data) {
  say("DONE", data);
  await readLine();
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function options(extra = {}) {
  const worker = { maxPoolSize: Math.max(10, C + 2) };
  if (args.variant === "batch") {
    Object.assign(worker, { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 });
  }
  const opts = {
    connectionString: args.db,
    concurrency: C,
    noHandleSignals: true,
    preset: { worker },
    ...extra,
  };
  if (args["poll-interval"]) opts.pollInterval = Number(args["poll-interval"]) * 1000;
  if (args["silent-logger"]) {
    const { Logger } = require(require.resolve("@graphile/logger", { paths: [workerPath || process.cwd()] }));
    opts.logger = new Logger(() => () => {});
  }
  return opts;
}

async function enqueue() {
  const utils = await makeWorkerUtils({ connectionString: args.db });
  await utils.addJob("noop", { i: -1 }); // connect outside the timed part
  await handshake();
  const t0 = perf();
  if (args.mode === "enqueue-batch") {
    for (let start = 0; start < N; start += CHUNK) {
      const specs = [];
      for (let i = start; i < Math.min(start + CHUNK, N); i++) specs.push({ identifier: "noop", payload: { i } });
      await utils.addJobs(specs);
    }
  } else {
    for (let i = 0; i < N; i++) await utils.addJob("noop", { i });
  }
  const seconds = perf() - t0;
  await finish({ seconds, jobs: N });
  await utils.release();
}

async function drain() {
  let handled = 0;
  let first = null;
  let firstWall = null;
  const utils = await makeWorkerUtils({ connectionString: args.db });
  const remaining = () =>
    utils.withPgClient(async (c) => {
      const r = await c.query("select count(*)::int as n from graphile_worker._private_jobs where id >= $1", [MIN_ID]);
      return r.rows[0].n;
    });
  await remaining();
  await handshake();
  const t0 = perf();
  const runner = await run(
    options({
      taskList: {
        noop: async () => {
          if (first === null) {
            first = perf();
            firstWall = wallNow();
          }
          handled++;
        },
      },
    }),
  );
  // In scale-out (--procs > 1) each process runs a share: only the table tells when the batch is done.
  while (Number(args.procs) === 1 && handled < N) await sleep(2);
  const pause = Number(args.procs) === 1 ? 2 : 20; // as common.wait_drained: every 20 ms in scale-out
  while ((await remaining()) > 0) await sleep(pause);
  const t1 = perf();
  const out = { seconds: t1 - t0, steady_seconds: first === null ? 0 : t1 - first, handled, jobs: N };
  await finish({ ...out, first_wall: firstWall, end_wall: wallNow() });
  await runner.stop();
  await utils.release();
}

async function latencyWorker() {
  const values = [];
  const starts = {};
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const runner = await run(
    options({
      pollInterval: Number(args["poll-interval"] || 60) * 1000,
      taskList: {
        noop: async (payload) => {
          const now = wallNow();
          if (payload && payload.t !== undefined) {
            values.push((now - payload.t) * 1000);
            starts[payload.i] = now;
          }
          if (values.length >= N) resolveDone();
        },
      },
    }),
  );
  await sleep(500); // let LISTEN come up
  await handshake();
  await done;
  await finish({ latencies_ms: values, starts });
  await runner.stop();
}

const modes = { "enqueue-batch": enqueue, "enqueue-single": enqueue, drain, "latency-worker": latencyWorker };
if (!modes[args.mode]) {
  console.error(`unsupported mode ${args.mode}`);
  process.exit(2);
}
modes[args.mode]().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
