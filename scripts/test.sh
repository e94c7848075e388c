#!/usr/bin/env bash
# Runs weir's whole test suite on a fresh machine: installs what the tests
# need when it is missing, then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, as "command:package": tests/metrics.rs
# starts a real Prometheus and VictoriaMetrics on 127.0.0.1 and runs promtool;
# tests/live_page.rs loads the live page in headless Chromium.
NEEDED=(prometheus:prometheus promtool:prometheus victoria-metrics:victoria-metrics prometheus-alertmanager:prometheus-alertmanager chromium:chromium)
missing=()
for pair in "${NEEDED[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# Packages without a command: a CJK font, so the live page's screenshot shows
# the Chinese rule annotations (tests/live_page.rs).
for pkg in fonts-wqy-zenhei; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# --workspace: the root package and every member (crates/workload has its own unit tests).
cargo test --workspace --locked "$@"
