#!/usr/bin/env bash
# Build (once) the binaries for the local e2e control plane and print their directory.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes $K8S_VERSION)
#   kubelet, kube-proxy                                      (the real node, same version)
#   pause                                                    (the sandbox binary, from the module's C source)
#   etcd (3.5), kwok, helm (3)
#
# Binaries are cached outside the repository in
#   ${JOBWORKER_K8S_CACHE:-$HOME/.cache/jobworker-k8s}/<k8s version>/bin
# and only rebuilt when missing. The last line of stdout is the bin directory;
# progress goes to stderr.
set -euo pipefail

K8S_VERSION="${JOBWORKER_K8S_VERSION:-v1.33.13}"
ETCD_VERSION="${JOBWORKER_ETCD_VERSION:-v3.5.21}"
KWOK_VERSION="${JOBWORKER_KWOK_VERSION:-v0.7.0}"
HELM_VERSION="${JOBWORKER_HELM_VERSION:-v3.18.6}"
GO="${GO:-/usr/local/go/bin/go}"

CACHE_ROOT="${JOBWORKER_K8S_CACHE:-$HOME/.cache/jobworker-k8s}"
VERSION_DIR="$CACHE_ROOT/$K8S_VERSION"
BIN_DIR="$VERSION_DIR/bin"
SRC_DIR="$VERSION_DIR/src"

export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

KUBE_BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

log() { printf '[build-k8s] %s\n' "$*" >&2; }

have_all() {
  local b
  for b in $KUBE_BINS etcd kwok helm pause; do
    [[ -x "$BIN_DIR/$b" ]] || return 1
  done
}

if have_all; then
  echo "$BIN_DIR"
  exit 0
fi

mkdir -p "$BIN_DIR" "$SRC_DIR"
# One build at a time per cache directory (CI and a developer shell may race).
exec 9>"$VERSION_DIR/.build.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

build_kubernetes() {
  local mod_dir="$SRC_DIR/kubernetes" minor staging_version gomod
  minor="$(cut -d. -f2 <<<"${K8S_VERSION#v}")"
  staging_version="v0.${K8S_VERSION#v1.}"
  mkdir -p "$mod_dir"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  gomod="$(cd "$mod_dir" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || { log "could not locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  {
    echo "module jobworker.local/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # Every staging module is replaced by ./staging/src/... in the upstream go.mod;
    # point each one at its published release instead.
    grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$gomod" |
      awk -v v="$staging_version" '{ printf "replace %s => %s %s\n", $1, $1, v }'
  } >"$mod_dir/go.mod"
  log "$(grep -c '^replace' "$mod_dir/go.mod") staging modules replaced with $staging_version"
  : >"$mod_dir/go.sum"
  local pkgs=() b
  for b in $KUBE_BINS; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  # Pin every package to $K8S_VERSION: a bare `go get pkg` would upgrade to the newest release.
  (cd "$mod_dir" && "$GO" get "${pkgs[@]/%/@$K8S_VERSION}") >&2
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building $KUBE_BINS (cold: ~15-25 min)"
  (cd "$mod_dir" && "$GO" build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN_DIR/" "${pkgs[@]}") >&2
}

# The CRI sandbox ("pause") binary: its C source ships in the k8s.io/kubernetes module, so the sandbox
# image is built here rather than pulled from a registry. Static, so the image needs no libc.
build_pause() {
  local dir
  dir="$(GOFLAGS="" "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$dir/build/pause/linux/pause.c" ]] || { log "no build/pause/linux/pause.c in $dir"; exit 1; }
  log "compiling pause from k8s.io/kubernetes@$K8S_VERSION"
  "${CC:-gcc}" -static -O2 -DVERSION="$K8S_VERSION" -o "$BIN_DIR/pause" "$dir/build/pause/linux/pause.c" >&2
}

build_etcd() {
  local mod_dir="$SRC_DIR/etcd"
  mkdir -p "$mod_dir"
  printf 'module jobworker.local/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$mod_dir/go.mod"
  : >"$mod_dir/go.sum"
  log "building etcd $ETCD_VERSION"
  (cd "$mod_dir" && "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    "$GO" build -p 2 -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3) >&2
}

build_kwok() {
  log "building kwok $KWOK_VERSION"
  GOFLAGS="" GOBIN="$BIN_DIR" "$GO" install -p 2 -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
}

build_helm() {
  local gomod client_go minor ldflags pkg
  # Like helm's Makefile: the default .Capabilities.KubeVersion (helm template/lint without a cluster)
  # is the client-go minor helm was built with, not v1.20.
  gomod="$(GOFLAGS="" "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
  minor="$(cut -d. -f2 <<<"${client_go#v}")"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  log "building helm $HELM_VERSION (default kubeVersion v1.$minor)"
  GOFLAGS="" GOBIN="$BIN_DIR" "$GO" install -p 2 -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
}

start=$SECONDS
for b in $KUBE_BINS; do
  if [[ ! -x "$BIN_DIR/$b" ]]; then
    build_kubernetes
    break
  fi
done
[[ -x "$BIN_DIR/pause" ]] || build_pause
[[ -x "$BIN_DIR/etcd" ]] || build_etcd
[[ -x "$BIN_DIR/kwok" ]] || build_kwok
[[ -x "$BIN_DIR/helm" ]] || build_helm
have_all || { log "some binaries are still missing in $BIN_DIR"; exit 1; }
cat >"$VERSION_DIR/versions.txt" <<VERSIONS
kubernetes $K8S_VERSION
etcd $ETCD_VERSION
kwok $KWOK_VERSION
helm $HELM_VERSION
VERSIONS
log "all binaries ready in $BIN_DIR ($((SECONDS - start))s)"
echo "$BIN_DIR"
