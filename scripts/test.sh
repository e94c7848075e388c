#!/usr/bin/env bash
# Runs weir's whole test suite on a fresh machine: installs what the tests
# need when it is missing, then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, as "command:package". None yet: the tests
# that start Prometheus, Alertmanager or VictoriaMetrics add theirs here.
NEEDED=()
missing=()
for pair in "${NEEDED[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

cargo test --locked "$@"
