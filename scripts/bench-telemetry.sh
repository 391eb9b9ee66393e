#!/usr/bin/env bash
# The telemetry benchmark: CPU of the `sift` process per `POST /user` with telemetry off and
# on (console to a file plus OTLP/HTTP to a local receiver), and each half alone, against the
# scripted upstream. Modes are interleaved over several rounds, because a shared 2-core
# machine is noisy; the summary gives each mode's median and minimum and the overhead of the
# medians against `off`.
#
#   scripts/bench-telemetry.sh [rounds] [requests per run]      (defaults: 5, 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
REQUESTS=${2:-20000}
TARGET=${CARGO_TARGET_DIR:-target}
MODES=${MODES:-off console otlp on}

cargo build --quiet --release -p sift-cli -p sift-test-support
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        ms=$("$TARGET/release/load-user" --sift "$TARGET/release/sift" --requests "$REQUESTS" \
            --connections 16 --telemetry "$mode" | sed -n 's/.*, \([0-9.]*\) ms per request/\1/p')
        echo "round $round $mode: $ms ms CPU per request"
        echo "$mode $ms" >>"$results"
    done
done
python3 - "$results" $MODES <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
modes = sys.argv[2:]
med = {m: statistics.median(float(v) for k, v in rows if k == m) for m in modes}
print("\nmode      median    min     vs off (medians)")
for m in modes:
    vals = [float(v) for k, v in rows if k == m]
    rel = f"{(med[m] / med['off'] - 1) * 100:+.0f}%" if "off" in med else ""
    print(f"{m:8} {med[m]:.3f} ms  {min(vals):.3f} ms  {rel}")
EOF
