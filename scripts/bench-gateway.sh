#!/usr/bin/env bash
# The gateway benchmark: CPU per request of the server process, against the scripted upstream
# (instant answers), for
#   user     sift's `POST /user` (the seed's query),
#   chat     sift's `POST /v1/chat/completions`, the same query with the same schema as a
#            `response_format` (validated like /user),
#   litellm  LiteLLM's proxy (`litellm[proxy]`, in its own virtualenv under
#            ~/.cache/sift/bench) in front of the same upstream, sent the same request (it
#            passes the schema on and validates nothing).
# Interleaved over several rounds on one machine (a shared 2-core machine is noisy); the
# summary gives each one's median and the ratios of the medians.
#
#   scripts/bench-gateway.sh [rounds] [requests per sift run] [requests per litellm run]
#       (defaults: 5, 20000, 3000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
REQUESTS=${2:-20000}
LITELLM_REQUESTS=${3:-3000}
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${LITELLM_VENV:-$HOME/.cache/sift/bench/litellm}

if [ ! -x "$VENV/bin/litellm" ]; then
    echo "installing litellm[proxy] into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]"
fi
cargo build --quiet --release -p sift-cli -p sift-test-support
results=$(mktemp)
trap 'rm -f "$results"' EXIT
run() {
    "$TARGET/release/load-user" --sift "$TARGET/release/sift" --connections 16 --telemetry off "$@" \
        | sed -n 's/.*, \([0-9.]*\) ms per request/\1/p'
}
for round in $(seq "$ROUNDS"); do
    ms=$(run --requests "$REQUESTS" --path /user)
    echo "round $round user: $ms ms"; echo "user $ms" >>"$results"
    ms=$(run --requests "$REQUESTS" --path /v1/chat/completions)
    echo "round $round chat: $ms ms"; echo "chat $ms" >>"$results"
    ms=$(run --requests "$LITELLM_REQUESTS" --litellm "$VENV/bin/litellm")
    echo "round $round litellm: $ms ms"; echo "litellm $ms" >>"$results"
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {m: statistics.median(float(v) for k, v in rows if k == m) for m in ("user", "chat", "litellm")}
print("\nserver    median CPU per request")
for m, v in med.items():
    print(f"{m:8}  {v:.3f} ms")
print(f"\nchat / user:    {med['chat'] / med['user']:.2f}x")
print(f"litellm / chat: {med['litellm'] / med['chat']:.1f}x")
PY
