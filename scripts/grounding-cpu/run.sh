#!/usr/bin/env bash
# CPU per seed `/user` request with grounding checks on against off, counted in instructions
# by callgrind (no hardware counters needed): `sift serve` behind a Python upstream that
# answers the tool call, a configured `user` extractor (user-on.toml: default policies;
# user-off.toml: `"*" = "free"`), 200 then 1200 sequential requests; per request is the
# difference divided by 1000. Needs valgrind.
#
#     scripts/grounding-cpu/run.sh [target/release/sift] [OTHER_BINARY...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bins=("${@:-target/release/sift}")
out="$(mktemp -d)"
python3 "$here/upstream.py" 9101 >/dev/null 2>&1 &
up=$!
trap 'kill $up 2>/dev/null' EXIT
count() { # BIN CONFIG N -> instructions
  OPENAI_BASE_URL=http://127.0.0.1:9101/v1 OPENAI_API_KEY=sk-test SIFT_CONFIG="$2" \
    SIFT_CONSOLE=off SIFT_TRACES=0 \
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$1" serve --port 9102 \
    >"$out/serve.log" 2>&1 &
  local vp=$!
  for _ in $(seq 1 120); do curl -s -m 2 127.0.0.1:9102/healthz >/dev/null && break; sleep 1; done
  python3 "$here/drive.py" 9102 "$3" >&2
  kill -INT $vp; wait $vp || true
  grep -h '^totals:' "$out/cg" | awk '{print $2}'
}
for bin in "${bins[@]}"; do
  for policy in on off; do
    a=$(count "$bin" "$here/user-$policy.toml" 200)
    b=$(count "$bin" "$here/user-$policy.toml" 1200)
    echo "$bin grounding $policy: $(( (b - a) / 1000 )) instructions per request"
  done
done
