#!/usr/bin/env bash
# Stop the local control plane started by hack/cluster-up.sh (each recorded PID, newest first).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$python" ]] || python=python3
dir="${JOBWORKER_CLUSTER_DIR:-${TMPDIR:-/tmp}/jobworker-cluster}"
exec "$python" "$here/cluster.py" down --dir "$dir" "$@"
