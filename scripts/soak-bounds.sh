#!/usr/bin/env bash
# The bounds probes (benchmarks, not tests; not part of CI): slow request bodies, the ad-hoc
# schema cache, and /healthz while large schemas compile, against the release `sift serve`.
# Prints RSS before, at peak and after (and /healthz latencies).
#   scripts/soak-bounds.sh [slow-body|cache|healthz ...] [--sift BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sift-cli -p sift-test-support
probes=()
while [ $# -gt 0 ] && [[ "$1" != --* ]]; do probes+=("$1"); shift; done
[ ${#probes[@]} -gt 0 ] || probes=(slow-body cache healthz)
for p in "${probes[@]}"; do
  target/release/probe-bounds "$p" "$@"
done
