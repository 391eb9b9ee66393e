#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each): the streaming JSON parser
# (json_stream) and a streamed answer end to end (sse_stream: SSE decoder, chunk reader,
# answer reader). Installs cargo-fuzz when missing; uses the stable toolchain with
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs nightly flags for the sanitizer).
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# Its own target directory: the sanitizer build shares nothing with the workspace's.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../target}/fuzz"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in json_stream sse_stream; do
  echo "fuzz: $target for ${seconds}s"
  if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: $target failed (the crashing input is under fuzz/artifacts/$target/)"
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$log" || true
done
