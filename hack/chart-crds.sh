#!/usr/bin/env bash
# The CRDs the chart's server-side dry runs need besides its own: cert-manager's Certificate and
# Issuer kinds and prometheus-operator's ServiceMonitor, taken from those projects' Go modules at
# pinned versions (`go mod download` through the module proxy; the module zips carry the CRD
# files), into DIR. The tests read them from DIR and never fetch anything.
#
#   hack/chart-crds.sh DIR CERT_MANAGER_VERSION PROMETHEUS_OPERATOR_VERSION
set -euo pipefail
dir=$1 cm=$2 po=$3
stamp="cert-manager ${cm} prometheus-operator ${po}"
[[ -f "${dir}/versions" && "$(cat "${dir}/versions")" == "${stamp}" ]] && exit 0

# moddir MODULE VERSION prints the module's directory in the module cache, downloading it first.
moddir() {
  (cd "$(mktemp -d)" && go mod download -json "$1@$2") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}
cmdir=$(moddir github.com/cert-manager/cert-manager "${cm}")
podir=$(moddir github.com/prometheus-operator/prometheus-operator "${po}")
[[ -d "${cmdir}" && -d "${podir}" ]] || { echo "cannot download the CRD modules" >&2; exit 1; }

rm -rf "${dir}"
mkdir -p "${dir}"
for f in cert-manager.io_certificates cert-manager.io_issuers cert-manager.io_clusterissuers; do
  cp "${cmdir}/deploy/crds/${f}.yaml" "${dir}/"
done
cp "${podir}/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "${dir}/"
chmod u+w "${dir}"/*.yaml
echo "${stamp}" > "${dir}/versions"
