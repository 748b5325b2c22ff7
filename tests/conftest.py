from __future__ import annotations

import os

# Tests must not pick up the developer's own configuration.
for _name in list(os.environ):
    if _name.startswith("JOBWORKER_") and _name not in (
        "JOBWORKER_TEST_DATABASE_URL",
        "JOBWORKER_REQUIRE_CLUSTER",
        "JOBWORKER_BUILD_K8S",
        "JOBWORKER_K8S_CACHE",
        "JOBWORKER_REQUIRE_NODE",
        "JOBWORKER_NODE_CACHE",
        "JOBWORKER_K8S_VERSION",
        "JOBWORKER_UPDATE_SCHEMA",
        "JOBWORKER_REQUIRE_KUBELET",
        "JOBWORKER_REQUIRE_NODE_IMAGES",
        "JOBWORKER_IMAGE_CACHE",
        "JOBWORKER_REQUIRE_RUST",
        "JOBWORKER_RUST_CACHE",
        "JOBWORKER_REQUIRE_BROWSER",
        "JOBWORKER_CHROMIUM",
    ):
        del os.environ[_name]
for _name in ("DATABASE_URL", "WORKER_DATABASE_URL", "JOBS_PROVIDER", "JOBS_CONCURRENCY"):
    os.environ.pop(_name, None)

# Import Hypothesis now, not lazily from its pytest plugin's terminal summary: by then CPython 3.11.7's ast
# module can hold a stale recursion depth (gh-106905) and pytest's rewriting import fails with SystemError.
import hypothesis  # noqa: E402, F401
