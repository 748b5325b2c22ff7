#!/usr/bin/env bash
# `make kind-up`: a kind cluster (kind-config.yaml: 1 control plane + 2 workers) running jobworker for real.
#
#   1. creates the kind cluster (reuses it if it exists)
#   2. builds the images jobworker:dev and jobworker-operator:dev (worker_image/Dockerfile, operator/Dockerfile)
#      and jobworker-examples:dev (jobworker:dev + examples/, the tasks of examples/pool.yaml)
#   3. loads them into the cluster
#   4. applies crds/ (server-side), installs charts/jobworker with --skip-crds
#   5. applies examples/pool.yaml with spec.image set to jobworker-examples:dev
#
# Needs docker (a running engine), kind, kubectl and helm 3. Without a container engine, use the
# process-based control plane instead: `make cluster-up` (see docs/ and /work/shared/k8s-local-control-plane.md).
#
# Environment: KIND_CLUSTER_NAME (default jobworker), JOBWORKER_NAMESPACE (default jobworker-system),
# HELM (default: helm on PATH, else the helm that hack/build-k8s.sh caches).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cluster="${KIND_CLUSTER_NAME:-jobworker}"
namespace="${JOBWORKER_NAMESPACE:-jobworker-system}"
context="kind-$cluster"

log() { printf '[kind-up] %s\n' "$*" >&2; }

no_docker() {
  cat >&2 <<MSG
[kind-up] $1

kind runs Kubernetes nodes as Docker containers, so it needs docker with a running engine plus the kind
binary (https://kind.sigs.k8s.io/docs/user/quick-start/#installation).

No container engine? Use the local control plane instead, which runs kube-apiserver, the controllers and
kwok fake nodes as plain processes on 127.0.0.1:

    make cluster-up

(pods are scheduled and reach Running there, but containers never actually run).
MSG
  exit 1
}

command -v docker >/dev/null 2>&1 || no_docker "docker is not installed."
docker info >/dev/null 2>&1 || no_docker "docker is installed but no Docker engine is reachable (docker info failed)."
command -v kind >/dev/null 2>&1 || no_docker "kind is not installed."
command -v kubectl >/dev/null 2>&1 || { log "kubectl is not installed"; exit 1; }

helm="${HELM:-}"
if [[ -z "$helm" ]]; then
  if command -v helm >/dev/null 2>&1; then
    helm="$(command -v helm)"
  else
    for candidate in "${JOBWORKER_K8S_CACHE:-$HOME/.cache/jobworker-k8s}"/v*/bin/helm; do
      [[ -x "$candidate" ]] && helm="$candidate"
    done
  fi
fi
[[ -n "$helm" && -x "$helm" ]] || { log "helm 3 not found: install it or run hack/build-k8s.sh"; exit 1; }

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing kind cluster $cluster"
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config kind-config.yaml --wait 180s
fi

log "building images"
docker build -f worker_image/Dockerfile -t jobworker:dev .
docker build -f operator/Dockerfile -t jobworker-operator:dev .
if [[ -d examples ]]; then
  # Your own tasks image, built FROM the runtime image (docs/images.md); context = examples/.
  docker build -t jobworker-examples:dev -f - examples <<'DOCKERFILE'
FROM jobworker:dev
COPY --chown=0:0 . /app/examples/
DOCKERFILE
fi

log "loading images into $cluster"
images=(jobworker:dev jobworker-operator:dev)
[[ -d examples ]] && images+=(jobworker-examples:dev)
kind load docker-image --name "$cluster" "${images[@]}"

log "applying crds/"
kubectl --context "$context" apply --server-side -f crds/
kubectl --context "$context" wait --for=condition=Established --timeout=60s -f crds/

log "installing the chart into $namespace"
"$helm" upgrade --install jobworker charts/jobworker \
  --kube-context "$context" --namespace "$namespace" --create-namespace --skip-crds \
  --set image.repository=jobworker-operator --set image.tag=dev --set image.pullPolicy=Never \
  --set metrics.service.type=NodePort --set metrics.service.nodePort=30900 \
  --wait --timeout 5m

if [[ -f examples/pool.yaml ]]; then
  log "applying examples/pool.yaml"
  kubectl --context "$context" apply -f examples/pool.yaml
  # Run the example with the locally built tasks image instead of the published one.
  kubectl --context "$context" get -f examples/pool.yaml --no-headers \
    -o custom-columns=KIND:.kind,NAME:.metadata.name,NAMESPACE:.metadata.namespace |
    while read -r kind name ns; do
      [[ "$kind" == "JobWorkerPool" ]] || continue
      kubectl --context "$context" -n "$ns" patch jobworkerpool "$name" --type merge \
        -p '{"spec":{"image":"jobworker-examples:dev","imagePullPolicy":"IfNotPresent"}}'
    done
  log "the example pool needs its database; see the comments in examples/pool.yaml"
else
  log "examples/pool.yaml not found; skipping the example pool"
fi

cat >&2 <<DONE
[kind-up] ready.
  kubectl --context $context -n $namespace get pods
  kubectl --context $context get jobworkerpools -A
  curl -s http://127.0.0.1:9000/metrics      # the operator's metrics (NodePort 30900)
  kind delete cluster --name $cluster         # tear down
DONE
