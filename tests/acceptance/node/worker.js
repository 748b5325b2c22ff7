"use strict";
// Runs the real graphile-worker 0.17 on the jobs the acceptance tests add.
//
// usage: node worker.js once|run
// env:   DATABASE_URL; NODE_TASKS (comma list, default every task); CONCURRENCY (default 2);
//        POLL_INTERVAL_MS (default 200)
//
// The tasks write the same rows to public.acceptance_effects as tests/acceptance/acceptance_tasks.py,
// with runtime 'node': a 'started' row when a job begins and a 'done' row when it succeeds.
// `run` keeps going until SIGTERM/SIGINT, which graphile-worker handles itself.
const { run, runOnce } = require("graphile-worker");

const note = (helpers, what) =>
  helpers.withPgClient((client) =>
    client.query(
      "insert into public.acceptance_effects (job_id, task, runtime, attempt, note) " +
        "values ($1::bigint, $2, 'node', $3, $4)",
      [helpers.job.id, helpers.job.task_identifier, helpers.job.attempts, what],
    ),
  );

async function record(payload, helpers) {
  await note(helpers, "started");
  if (payload && payload.sleep) {
    await new Promise((resolve) => setTimeout(resolve, Number(payload.sleep) * 1000));
  }
  await note(helpers, "done");
}

const every = { record, node_record: record };

function taskList() {
  const wanted = (process.env.NODE_TASKS || Object.keys(every).join(",")).split(",").filter(Boolean);
  const list = {};
  for (const name of wanted) {
    if (!every[name]) throw new Error(`unknown task ${name}`);
    list[name] = every[name];
  }
  return list;
}

async function main() {
  const mode = process.argv[2];
  const options = {
    connectionString: process.env.DATABASE_URL,
    concurrency: Number(process.env.CONCURRENCY || 2),
    pollInterval: Number(process.env.POLL_INTERVAL_MS || 200),
    taskList: taskList(),
  };
  if (mode === "once") {
    await runOnce(options);
  } else if (mode === "run") {
    const runner = await run(options);
    console.log("node worker ready");
    await runner.promise;
  } else {
    throw new Error("usage: node worker.js once|run");
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = process.exitCode || 1;
});
