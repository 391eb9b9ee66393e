#!/usr/bin/env bash
# sift serve in front of llama.cpp's own llama-server (same SmolLM2 GGUF as the embedded
# default), in every mode: the seed's three endpoints, answered through whatever form of
# forcing the server honours (see sift-openai's `dialect`). Builds llama-server when missing
# (scripts/llama-server.sh, about 10 minutes). Not part of CI.
#   scripts/llama-upstream.sh [DIALECT]      # auto (default) or llamacpp
set -euo pipefail
cd "$(dirname "$0")/.."
dialect="${1:-auto}"
server_bin="$(scripts/llama-server.sh)"
cargo build --release -q -p sift-cli
model="$(ls "${SIFT_CACHE_DIR:-$HOME/.cache/sift/models}"/*.gguf | head -1)"
lport=18090
sport=18091
"$server_bin" -m "$model" --host 127.0.0.1 --port "$lport" -t 2 --parallel 2 --jinja \
  >target/llama-upstream-server.log 2>&1 &
llama=$!
sift=""
trap 'kill $llama $sift 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$lport/health" >/dev/null 2>&1 && break
  sleep 1
done
for mode in tools json_schema json md_json; do
  OPENAI_BASE_URL="http://127.0.0.1:$lport/v1" OPENAI_API_KEY=none SIFT_MODEL=local \
    SIFT_MODE="$mode" SIFT_DIALECT="$dialect" target/release/sift serve --port "$sport" \
    >"target/llama-upstream-sift-$mode.log" 2>&1 &
  sift=$!
  for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$sport/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  echo "== mode $mode (dialect $dialect)"
  for q in "Daniel is a 24 year man living in New York City" "Sarah is a 20 year old living in Tokyo" \
           "Jeffrey is 55 and lives down in Leeds"; do
    start=$(date +%s.%N)
    out=$(curl -s -o /tmp/llama-upstream.out -w '%{http_code}' -X POST "localhost:$sport/user" \
      -H 'content-type: application/json' -d "{\"query\": \"$q\"}")
    took=$(echo "$(date +%s.%N) - $start" | bc)
    echo "  /user $out ${took}s $(head -c 300 /tmp/llama-upstream.out)"
  done
  out=$(curl -s -o /tmp/llama-upstream.out -w '%{http_code}' -X POST "localhost:$sport/many-users" \
    -H 'content-type: application/json' \
    -d '{"queries": ["Daniel is a 34 year man in New York City", "Sarah is a 20 year old living in Tokyo", "Jeffrey is 55 and lives down in Leeds"]}')
  echo "  /many-users $out $(head -c 300 /tmp/llama-upstream.out)"
  out=$(curl -sN -o /tmp/llama-upstream.out -w '%{http_code}' -X POST "localhost:$sport/extract" \
    -H 'content-type: application/json' \
    -d '{"query": "Alice and Bob are best friends. They are currently 32 and 43 respectively."}')
  echo "  /extract $out $(tr '\n' ' ' < /tmp/llama-upstream.out | head -c 300)"
  { grep -E 'does not honour|retrying' "target/llama-upstream-sift-$mode.log" || true; } | head -3 | sed 's/^/  log: /'
  kill $sift; wait $sift 2>/dev/null || true
  sift=""
done
