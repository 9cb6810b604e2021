#!/usr/bin/env bash
# Installs the system packages the test suite needs, if they are missing.
# Go modules are fetched by `go test` itself through the module proxy.
set -euo pipefail
need=()
# (Later suites add redis-server, chromium, ffmpeg, simple-whip-client here.)
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v go >/dev/null || { echo "go 1.26 is required on PATH" >&2; exit 1; }
go version
