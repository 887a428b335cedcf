#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from source through the Go module proxy and caches them
# under bin/k8s/<kubernetes-version>/. setup-envtest downloads prebuilt binaries from a bucket that
# this project's machines cannot reach; the module proxy they can. Rebuilds only what is missing.
#
# Usage: hack/build-control-plane.sh [output-dir]
# Prints the directory holding the binaries (for KUBEBUILDER_ASSETS) on its last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/control-plane.env
source "${root}/hack/control-plane.env"
k8s="v${KUBERNETES_VERSION}"
staging="v0.${KUBERNETES_VERSION#1.}"
out="${1:-${root}/bin/k8s/${KUBERNETES_VERSION}}"
mkdir -p "${out}"

log() { printf '==> %s\n' "$*" >&2; }

have() { [[ -x "${out}/$1" ]]; }

build_kubernetes() {
  local work gomod minor
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  cd "${work}"
  go mod init local/build-kubernetes >/dev/null 2>&1
  log "Fetching k8s.io/kubernetes ${k8s} through the module proxy"
  gomod="$(go mod download -json "k8s.io/kubernetes@${k8s}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  # kubernetes' own go.mod points every k8s.io staging module at ./staging/...; the same code is
  # published as k8s.io/<name> v0.<minor>.<patch>, so replace each with that release.
  local args=()
  while read -r mod; do
    args+=("-replace=${mod}=${mod}@${staging}")
  done < <(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*#\1#p' "${gomod}")
  if [[ ${#args[@]} -eq 0 ]]; then
    echo "no staging replacements found in ${gomod}" >&2
    return 1
  fi
  go mod edit "${args[@]}" "-require=k8s.io/kubernetes@${k8s}"
  minor="${KUBERNETES_VERSION#1.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/client-go/pkg/version.gitVersion=${k8s}"
  for cmd in "$@"; do
    log "Building ${cmd} ${k8s} (several minutes the first time)"
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${out}/${cmd}" "k8s.io/kubernetes/cmd/${cmd}"
  done
}

build_etcd() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  cd "${work}"
  go mod init local/build-etcd >/dev/null 2>&1
  log "Building etcd v${ETCD_VERSION}"
  go mod edit "-require=go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${out}/etcd" go.etcd.io/etcd/server/v3
}

missing=()
for c in kube-apiserver kubectl; do have "${c}" || missing+=("${c}"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  ( build_kubernetes "${missing[@]}" )
fi
have etcd || ( build_etcd )
for c in kube-apiserver kubectl etcd; do
  have "${c}" || { echo "failed to build ${c} into ${out}" >&2; exit 1; }
done
echo "${out}"
