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

# Disk: the build and the tests' scratch files need about 2 GiB. A full
# disk does not fail fast — weir waits for space rather than dropping data —
# so say so up front instead of letting a test wait on it.
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
free_kib=$(df -Pk "$target" | awk 'NR==2 {print $4}')
tmp_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
echo "free disk: $((free_kib / 1024)) MiB for $target, $((tmp_kib / 1024)) MiB for ${TMPDIR:-/tmp}" >&2
if [ "$free_kib" -lt 2097152 ] || [ "$tmp_kib" -lt 524288 ]; then
  echo "warning: less than 2 GiB free for the build or 512 MiB for test scratch files; tests that write logs may wait on a full disk (each test command has a deadline and then fails)" >&2
fi

# A clean build gains nothing from incremental compilation, which would more
# than double the space the build takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# --workspace: the root package and every member (crates/workload has its own unit tests).
cargo test --workspace --locked "$@"
