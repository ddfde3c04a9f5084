#!/usr/bin/env bash
# A real Kubernetes API on 127.0.0.1 for `helm install` tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and kwok faking one Ready node (pods report Running;
# no container ever runs, so `helm test` cannot pass here).
# Usage: scripts/k8s.sh build|start|stop|status|reset|kubeconfig|kubectl
#   build       build every binary once, cached by version under $CW_TOOLS_CACHE (default
#               ~/.cache/crypto-watcher): cold 6.3 min on 2 cores (measured 2026-12-02) and
#               ~6 GB of Go caches; later runs start in seconds
#   start       build if needed, make certificates, start everything, wait for a Ready node
#   stop        stop everything;  reset: stop and delete the cluster's data and certificates
#   kubeconfig  print the path of the admin kubeconfig;  kubectl: print the path of kubectl
# The chart's ServiceMonitor and PrometheusRule need prometheus-operator's CRDs: start applies the
# real ones, from the operator's Go module (PROM_OPERATOR_VERSION, 0.85.0) on the Go module proxy,
# fetched once (by build, or by the first start) and kept beside the binaries, so a later start
# needs neither `go` nor the proxy. A start that fails stops every component it had started.
# Settings: K8S_VERSION (1.34.4), ETCD_VERSION (3.6.16), KWOK_VERSION (0.7.0),
#   K8S_API_PORT (16443), K8S_ETCD_PORT (12379), CW_CACHE_DIR, CW_TOOLS_CACHE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-0.7.0}"
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-0.85.0}"
K8S_API_PORT="${K8S_API_PORT:-16443}"
K8S_ETCD_PORT="${K8S_ETCD_PORT:-12379}"
K8S_ETCD_PEER_PORT="${K8S_ETCD_PEER_PORT:-12380}"
K8S_CM_PORT="${K8S_CM_PORT:-16257}"
K8S_SCHED_PORT="${K8S_SCHED_PORT:-16259}"
BIN_DIR="$CW_TOOLS_CACHE/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
CRD_DIR="$CW_TOOLS_CACHE/prometheus-operator-$PROM_OPERATOR_VERSION-crds"
CRD_FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
HOME_DIR="$CW_CACHE_DIR/k8s"
PKI="$HOME_DIR/pki"
KUBECONFIG_FILE="$HOME_DIR/admin.kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

go_build_env() {
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
}

build() {
  local missing=()
  for c in "${COMPONENTS[@]}" kubectl; do [[ -x "$BIN_DIR/$c" ]] || missing+=("$c"); done
  ((${#missing[@]})) || return 0
  command -v go >/dev/null || die "go not found: the Kubernetes control plane is built from its Go modules"
  mkdir -p "$BIN_DIR"
  local work="$CW_TOOLS_CACHE/build/kubernetes-$K8S_VERSION"
  mkdir -p "$work"
  log "building ${missing[*]} from their Go modules (first run only: ~7 min on 2 cores; log $work/build.log)"
  local t0=$SECONDS
  (
    set -euo pipefail
    go_build_env
    cd "$work"
    # k8s.io/kubernetes replaces its staging modules with folders of its own repository; `go
    # install pkg@version` refuses such modules, so a build module repeats each replace with the
    # published staging version (v0.<minor>.<patch>).
    local staging_version="v0.${K8S_VERSION#*.}" upstream staging
    rm -f go.mod go.sum
    upstream=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    staging=$(sed -n '/^replace (/,/^)/p' "$upstream" | grep -oE 'k8s\.io/[a-z0-9-]+ =>' | sed 's/ =>//')
    [[ -n "$staging" ]] || { echo "no replace block in $upstream"; exit 1; }
    {
      printf 'module cwbuild/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
      for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
      printf ')\n'
    } >go.mod
    local ver="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*}"
    local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
    ver="$ver -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      [[ -x "$BIN_DIR/$c" ]] && continue
      go get "k8s.io/kubernetes/cmd/$c@v$K8S_VERSION"
      go build -trimpath -ldflags "-s -w $ver" -o "$BIN_DIR/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
      echo "built $c"
    done
    if [[ ! -x "$BIN_DIR/etcd" ]]; then
      # Debian's etcd 3.4 lacks watch progress requests, which kwok and the apiserver's watch
      # cache need; 3.6 builds from its server module.
      mkdir -p "$work/etcd" && cd "$work/etcd"
      printf 'module cwbuild/etcd\n\ngo 1.24\n' >go.mod
      go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
      go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
      mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
      echo "built etcd"
      cd "$work"
    fi
    if [[ ! -x "$BIN_DIR/kwok" ]]; then
      GOBIN="$work/kwok-bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
      mv "$work/kwok-bin/kwok" "$BIN_DIR/kwok"
      echo "built kwok"
    fi
  ) >>"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "building the Kubernetes control plane failed (log: $work/build.log)"; }
  log "built ${missing[*]} in $((SECONDS - t0))s into $BIN_DIR"
}

certs() {
  [[ -f "$PKI/admin.crt" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  mkdir -p "$PKI"
  (
    set -euo pipefail
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=cw-test-ca" 2>/dev/null
    cat >apiserver.ext <<EXT
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EXT
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=cw-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "making certificates failed"
  cat >"$KUBECONFIG_FILE" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: cw-test
  cluster:
    server: https://127.0.0.1:${K8S_API_PORT}
    certificate-authority: ${PKI}/ca.crt
users:
- name: cw-admin
  user:
    client-certificate: ${PKI}/admin.crt
    client-key: ${PKI}/admin.key
contexts:
- name: cw-test
  context: {cluster: cw-test, user: cw-admin}
current-context: cw-test
KCFG
}

pidfile() { echo "$HOME_DIR/$1.pid"; }
logfile() { echo "$HOME_DIR/$1.log"; }

launch() {
  local name=$1; shift
  nohup "$@" >"$(logfile "$name")" 2>&1 &
  echo $! >"$(pidfile "$name")"
}

kubectl_() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
etcd_ready() { curl -fsS "http://127.0.0.1:${K8S_ETCD_PORT}/health" 2>/dev/null | grep -q true; }
api_ready() { kubectl_ get --raw /readyz >/dev/null 2>&1; }
node_ready() {
  [[ "$(kubectl_ get node cw-node-0 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == "True" ]]
}

start() {
  if pid_alive "$(pidfile kube-apiserver)" && api_ready; then log "already running on https://127.0.0.1:$K8S_API_PORT"; return 0; fi
  port_open "$K8S_API_PORT" && die "127.0.0.1:$K8S_API_PORT is taken; set K8S_API_PORT"
  build
  fetch_crds
  certs
  mkdir -p "$HOME_DIR"
  local t0=$SECONDS
  # From here on a failure (die exits) must not leave half a control plane holding the ports.
  trap 'log "start failed; stopping what it started"; stop' EXIT
  launch etcd "$BIN_DIR/etcd" --name cw --data-dir "$HOME_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-cluster "cw=http://127.0.0.1:$K8S_ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
  wait_for etcd 60 "$(pidfile etcd)" "$(logfile etcd)" etcd_ready || die "etcd did not start"
  launch kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$K8S_ETCD_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "$K8S_API_PORT" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=false --profiling=false --v=1
  wait_for kube-apiserver 180 "$(pidfile kube-apiserver)" "$(logfile kube-apiserver)" api_ready || die "kube-apiserver did not start"
  launch kube-controller-manager "$BIN_DIR/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port "$K8S_CM_PORT" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --controllers '*' --profiling=false --v=1
  launch kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port "$K8S_SCHED_PORT" --leader-elect=false --profiling=false --v=1
  launch kwok "$BIN_DIR/kwok" --kubeconfig "$KUBECONFIG_FILE" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --manage-nodes-with-label-selector= --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
    --cidr 10.0.0.1/24 --node-ip 10.0.0.1 --node-lease-duration-seconds 40
  kubectl_ apply -f - >/dev/null <<NODE || die "could not create the fake node"
apiVersion: v1
kind: Node
metadata:
  name: cw-node-0
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: cw-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec: {}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo: {kubeletVersion: fake, architecture: amd64, operatingSystem: linux}
NODE
  wait_for kwok 120 "$(pidfile kwok)" "$(logfile kwok)" node_ready || die "the kwok node did not become Ready"
  apply_crds
  trap - EXIT
  log "Kubernetes v$K8S_VERSION API ready on https://127.0.0.1:$K8S_API_PORT in $((SECONDS - t0))s (kubeconfig $KUBECONFIG_FILE)"
}

fetch_crds() {
  local f missing=0 dir
  for f in "${CRD_FILES[@]}"; do [[ -s "$CRD_DIR/$f" ]] || missing=1; done
  ((missing)) || return 0
  command -v go >/dev/null || die "go is not on PATH; it is needed once, to fetch prometheus-operator v$PROM_OPERATOR_VERSION's CRDs into $CRD_DIR"
  dir=$(cd / && GOFLAGS= GOTOOLCHAIN=local go mod download -json "github.com/prometheus-operator/prometheus-operator@v$PROM_OPERATOR_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))') || true
  [[ -d "$dir/example/prometheus-operator-crd" ]] || die "could not fetch prometheus-operator v$PROM_OPERATOR_VERSION's CRDs from the Go module proxy"
  mkdir -p "$CRD_DIR"
  for f in "${CRD_FILES[@]}"; do install -m 0644 "$dir/example/prometheus-operator-crd/$f" "$CRD_DIR/$f"; done
}

apply_crds() {
  local f args=()
  for f in "${CRD_FILES[@]}"; do args+=(-f "$CRD_DIR/$f"); done
  # Server-side apply: these CRDs are larger than client-side apply's annotation allows.
  kubectl_ apply --server-side --force-conflicts "${args[@]}" >/dev/null || die "applying prometheus-operator's CRDs failed"
  kubectl_ wait --for condition=Established --timeout 60s crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null \
    || die "prometheus-operator's CRDs did not become Established in 60s"
}

stop() {
  local c
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$c" "$(pidfile "$c")"; done
}

status() {
  if pid_alive "$(pidfile kube-apiserver)" && api_ready; then echo "running on https://127.0.0.1:$K8S_API_PORT"; else echo "stopped"; return 1; fi
}

case "${1:-}" in
  build) build; fetch_crds ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) stop; rm -rf "$HOME_DIR"; log "data removed" ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  kubectl) echo "$BIN_DIR/kubectl" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
