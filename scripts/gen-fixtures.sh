#!/usr/bin/env bash
# Regenerates the sample logs in fixtures/ from the workload generator.
# tests/fixtures.rs checks that the committed files equal this output.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -- generate --lines 400 --seed 7 --output fixtures/feynman-sample.log
