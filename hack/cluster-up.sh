#!/usr/bin/env bash
# Start the local control plane in the background (see hack/cluster.py). Builds the binaries first
# if they are missing. State dir: $JOBWORKER_CLUSTER_DIR or ${TMPDIR:-/tmp}/jobworker-cluster.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$python" ]] || python=python3
dir="${JOBWORKER_CLUSTER_DIR:-${TMPDIR:-/tmp}/jobworker-cluster}"
exec "$python" "$here/cluster.py" up --build --dir "$dir" "$@"
