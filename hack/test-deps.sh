#!/usr/bin/env bash
# The tests run against real programs: MariaDB (mariadbd, started by the tests themselves on a
# loopback port with a temporary data directory), php-cli (checks hashes the way the panel does)
# and oathtool (checks TOTP codes). Installs them with apt-get when run as root on Debian/Ubuntu;
# otherwise says how to get them.
set -euo pipefail
pkgs=()
command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || pkgs+=(mariadb-server)
command -v php >/dev/null 2>&1 || pkgs+=(php-cli)
command -v oathtool >/dev/null 2>&1 || pkgs+=(oathtool)
[[ ${#pkgs[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "==> Installing ${pkgs[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  exit 0
fi
echo "The tests need: ${pkgs[*]}. Install them, e.g.: sudo apt-get install -y ${pkgs[*]}" >&2
exit 1
