#!/usr/bin/env bash
# Copy the CRDs in crds/ (the source of truth) into charts/jobworker/crds/, so that a plain
# `helm install` installs them too. tests/chart/test_chart_crds.py fails when the two copies differ.
#
#   scripts/sync_chart_crds.sh          # copy, removing chart CRD files that no longer exist in crds/
#   scripts/sync_chart_crds.sh --check  # exit 1 (and show a diff) if the copies differ
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/crds"
dst="$root/charts/jobworker/crds"

shopt -s nullglob
sources=("$src"/*.yaml "$src"/*.yml)
if ((${#sources[@]} == 0)); then
  echo "sync_chart_crds: no CRD files in $src" >&2
  exit 1
fi

if [[ "${1:-}" == "--check" ]]; then
  if diff -ru --exclude='.*' "$src" "$dst"; then
    echo "sync_chart_crds: charts/jobworker/crds/ matches crds/"
  else
    echo "sync_chart_crds: charts/jobworker/crds/ differs from crds/; run scripts/sync_chart_crds.sh" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$dst"
for f in "$dst"/*.yaml "$dst"/*.yml; do
  [[ -e "$src/$(basename "$f")" ]] || { rm -f -- "$f"; echo "removed $(basename "$f")"; }
done
for f in "${sources[@]}"; do
  cp -- "$f" "$dst/"
  echo "copied crds/$(basename "$f") -> charts/jobworker/crds/"
done
