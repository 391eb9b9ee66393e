#!/usr/bin/env bash
# The evaluation sets on the embedded default and on llama.cpp's own llama-server running the
# same GGUF (json_schema response format, the same prompts), side by side. Builds
# llama-server when missing (scripts/llama-server.sh, about 10 minutes). Not part of CI.
#   scripts/eval-compare.sh [REPORT_DIR]
# CONFIG=FILE uses another config than evals/sift.toml (its extractors must bear the same
# names); NO_EXAMPLES=1 uses evals/sift.toml without its worked examples (and without its
# `user`, so the built-in one answers); SIFT_ONLY=1 skips llama-server.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/eval-compare}"
mkdir -p "$out"
config="${CONFIG:-evals/sift.toml}"
if [ -n "${NO_EXAMPLES:-}" ]; then
  # Next to the original, so its relative schema paths hold.
  config="evals/.no-examples.toml"
  python3 - "$config" <<'PY'
import re, sys
text = open("evals/sift.toml").read()
blocks = re.split(r"\n(?=\[)", text)
keep = [b for b in blocks if not b.startswith("[[") and not b.startswith("[extractors.user]")]
open(sys.argv[1], "w").write("\n".join(keep))
PY
  trap 'rm -f evals/.no-examples.toml' EXIT
fi
cargo build --release -q -p sift-cli
model="$(ls "${SIFT_CACHE_DIR:-$HOME/.cache/sift/models}"/*.gguf | head -1)"
port=18089
if [ -z "${SIFT_ONLY:-}" ]; then
server_bin="$(scripts/llama-server.sh)"
"$server_bin" -m "$model" --host 127.0.0.1 --port "$port" -t 2 --parallel 4 --jinja \
  >"$out/llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f evals/.no-examples.toml' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 1
done
fi
sets=("user evals/seed.jsonl" "user evals/people-one.jsonl" "people evals/people-many.jsonl"
      "invoice evals/invoice.jsonl" "contact evals/contact.jsonl" "events evals/events.jsonl"
      "profile evals/absent.jsonl")
for s in "${sets[@]}"; do
  read -r name gold <<<"$s"
  base="$(basename "$gold" .jsonl)"
  echo "== $base: embedded default"
  env -u OPENAI_API_KEY -u OPENAI_BASE_URL target/release/sift eval --config "$config" \
    "$name" "$gold" --report "$out/$base.sift.json" --misses 0 | grep -E "exact match|^unexpected|^grounded"
  [ -n "${SIFT_ONLY:-}" ] && continue
  echo "== $base: llama-server (json_schema)"
  OPENAI_BASE_URL="http://127.0.0.1:$port/v1" OPENAI_API_KEY=none target/release/sift eval \
    --config "$config" --mode json_schema --model local "$name" "$gold" \
    --report "$out/$base.llama-server.json" --misses 0 | grep -E "exact match|^unexpected|^grounded"
done
