#!/usr/bin/env bash
# Soak test: mixed load against the release `sift serve` (30% of streaming clients hang up
# mid-stream), printing its RSS, threads, descriptors and upstream connections before, at
# peak and after. Not part of CI.
#   scripts/soak.sh [SECONDS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sift-cli -p sift-test-support
target/release/soak --seconds "${1:-120}" --clients "${2:-32}"
