"use strict";
// Adds jobs from Node, the two ways a Node application does.
//
// usage: node add_jobs.js utils|sql '<JSON array of specs>'
//   utils: makeWorkerUtils().addJob(task, payload, spec)
//   sql:   select graphile_worker.add_job(...) on a plain pg client
// A spec is {task, payload, queueName, runAt, maxAttempts, jobKey, jobKeyMode, priority, flags}.
// Prints a JSON array of the added jobs as {id, key, revision}, in spec order.
// env: DATABASE_URL
const { makeWorkerUtils } = require("graphile-worker");
const { Client } = require("pg");

async function viaUtils(connectionString, specs) {
  const utils = await makeWorkerUtils({ connectionString });
  try {
    const out = [];
    for (const s of specs) {
      const job = await utils.addJob(s.task, s.payload ?? {}, {
        queueName: s.queueName,
        runAt: s.runAt ? new Date(s.runAt) : undefined,
        maxAttempts: s.maxAttempts,
        jobKey: s.jobKey,
        jobKeyMode: s.jobKeyMode,
        priority: s.priority,
        flags: s.flags,
      });
      out.push({ id: Number(job.id), key: job.key, revision: job.revision });
    }
    return out;
  } finally {
    await utils.release();
  }
}

async function viaSql(connectionString, specs) {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    const out = [];
    for (const s of specs) {
      const { rows } = await client.query(
        "select id, key, revision from graphile_worker.add_job(" +
          "identifier => $1::text, payload => $2::json, queue_name => $3::text, run_at => $4::timestamptz, " +
          "max_attempts => $5::int, job_key => $6::text, priority => $7::int, flags => $8::text[], " +
          "job_key_mode => coalesce($9::text, 'replace'))",
        [
          s.task,
          JSON.stringify(s.payload ?? {}),
          s.queueName ?? null,
          s.runAt ?? null,
          s.maxAttempts ?? null,
          s.jobKey ?? null,
          s.priority ?? null,
          s.flags ?? null,
          s.jobKeyMode ?? null,
        ],
      );
      out.push({ id: Number(rows[0].id), key: rows[0].key, revision: rows[0].revision });
    }
    return out;
  } finally {
    await client.end();
  }
}

async function main() {
  const [mode, json] = process.argv.slice(2);
  const specs = JSON.parse(json);
  const add = { utils: viaUtils, sql: viaSql }[mode];
  if (!add) throw new Error("usage: node add_jobs.js utils|sql '<specs>'");
  console.log(JSON.stringify(await add(process.env.DATABASE_URL, specs)));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
