#!/usr/bin/env bash
# The embedded model's throughput, side by side with llama.cpp's own llama-server on the same
# GGUF, 2 threads, the seed's queries (see scripts/local_bench.py for what is measured).
# Builds llama-server when missing (scripts/llama-server.sh). Not part of CI.
#   scripts/local-bench.sh [ROUNDS] [PARALLEL] [KEEP_PROMPTS] [WHICH]
# PARALLEL and KEEP_PROMPTS go to sift (default: its own); WHICH is both, sift or llama.
# `scripts/local-bench.sh 3 1 false sift` is the engine as it was: one generation at a time, every
# prompt read in full.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
parallel="${2:-}"
kept="${3:-}"
which="${4:-both}"
out="target/local-bench"
mkdir -p "$out"
server_bin="$(scripts/llama-server.sh)"
cargo build --release -q -p sift-cli
model="$(ls "${SIFT_CACHE_DIR:-$HOME/.cache/sift/models}"/*.gguf | head -1)"
lport=18090
sport=18091
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
wait_up() {
  for _ in $(seq 1 120); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "local-bench.sh: $1 did not come up" >&2
  exit 1
}
peak_rss() { awk '/VmHWM/ {print $2 / 1024 " MB"}' "/proc/$1/status"; }

# One server at a time, so each has both cores.
if [ "$which" != sift ]; then
  "$server_bin" -m "$model" --host 127.0.0.1 --port "$lport" -t 2 --parallel 4 --jinja \
    >"$out/llama-server.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$lport/health"
  echo "== llama-server (--parallel 4)"
  python3 scripts/local_bench.py --llama "http://127.0.0.1:$lport" --rounds "$rounds" \
    --json "$out/llama-server.json"
  echo "llama-server peak RSS: $(peak_rss "${pids[-1]}")"
  # Decode speed of the last single requests (the warm-latency ones).
  grep -o '[0-9.]* tokens per second' "$out/llama-server.log" | awk 'NR % 2 == 0' | tail -10 \
    | sort -n | awk '{a[NR]=$1} END {if (NR) print "llama-server decode, single request: median " a[int((NR+1)/2)] " tokens/s"}'
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
fi
[ "$which" = llama ] && exit 0

tag="sift${parallel:+-p$parallel}${kept:+-k$kept}"
env -u OPENAI_API_KEY -u OPENAI_BASE_URL SIFT_LOG="info,sift_local=debug" \
  ${parallel:+SIFT_LOCAL_PARALLEL=$parallel} ${kept:+SIFT_LOCAL_KEEP_PROMPTS=$kept} \
  target/release/sift serve --port "$sport" --model-path "$model" >"$out/$tag.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$sport/healthz"
echo "== sift serve (embedded${parallel:+, --local-parallel $parallel}${kept:+, --local-keep-prompts $kept})"
python3 scripts/local_bench.py --sift "http://127.0.0.1:$sport" --rounds "$rounds" \
  --json "$out/$tag.json"
echo "sift peak RSS: $(peak_rss "${pids[-1]}")"
grep -o 'decode_tokens_per_s[^ ]*' "$out/$tag.log" | grep -o '[0-9.]*$' | tail -10 | sort -n \
  | awk '{a[NR]=$1} END {if (NR) print "sift decode, single request: median " a[int((NR+1)/2)] " tokens/s"}'
