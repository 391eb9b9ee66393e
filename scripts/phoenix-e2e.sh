#!/usr/bin/env bash
# End to end with a real trace backend: Arize Phoenix (PyPI `arize-phoenix`) on 127.0.0.1
# receives the spans of `sift serve` (embedded model) over OTLP/HTTP, and its REST API
# (`GET /v1/projects/{project}/spans`) must return the model call as an LLM span with its
# token counts, under the extraction, under the HTTP request.
#
#   scripts/phoenix-e2e.sh            # installs Phoenix into a venv under target/ on first use
#
# Settings: PHOENIX_VERSION (default below), PHOENIX_VENV (default $CARGO_TARGET_DIR/phoenix-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PHOENIX_VERSION=${PHOENIX_VERSION:-20.26.1}
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${PHOENIX_VENV:-$TARGET/phoenix-venv}
PROJECT=sift-e2e

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ ! -x "$VENV/bin/phoenix" ]; then
    echo "phoenix-e2e: installing arize-phoenix==$PHOENIX_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "arize-phoenix==$PHOENIX_VERSION"
fi

echo "phoenix-e2e: building sift"
# The binary the test suite builds (same features, so after `cargo test --workspace` this
# compiles nothing; `cargo build -p sift-cli` would resolve features anew and rebuild
# llama.cpp).
cargo test --quiet --workspace --no-run
SIFT="$TARGET/debug/sift"

work=$(mktemp -d)
phoenix_pid=""
sift_pid=""
cleanup() {
    [ -n "$sift_pid" ] && kill "$sift_pid" 2>/dev/null || true
    [ -n "$phoenix_pid" ] && kill "$phoenix_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

PORT=$(free_port)
GRPC_PORT=$(free_port)
echo "phoenix-e2e: starting Phoenix on 127.0.0.1:$PORT"
PHOENIX_WORKING_DIR="$work/phoenix" PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=$PORT \
    PHOENIX_GRPC_PORT=$GRPC_PORT PHOENIX_TELEMETRY_ENABLED=false \
    "$VENV/bin/phoenix" serve >"$work/phoenix.log" 2>&1 &
phoenix_pid=$!
for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$phoenix_pid" 2>/dev/null || { cat "$work/phoenix.log"; echo "phoenix-e2e: Phoenix exited"; exit 1; }
    sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$work/phoenix.log"; echo "phoenix-e2e: Phoenix did not start"; exit 1; }

echo "phoenix-e2e: starting sift serve (embedded model) exporting to Phoenix"
env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u LOGFIRE_TOKEN \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$PORT" \
    OTEL_RESOURCE_ATTRIBUTES="openinference.project.name=$PROJECT" \
    "$SIFT" serve --port 0 >"$work/sift.out" 2>"$work/sift.err" &
sift_pid=$!
url=""
for _ in $(seq 600); do
    url=$(sed -n 's/^listening on //p' "$work/sift.out")
    [ -n "$url" ] && break
    kill -0 "$sift_pid" 2>/dev/null || { cat "$work/sift.err"; echo "phoenix-e2e: sift exited"; exit 1; }
    sleep 0.5
done
[ -n "$url" ] || { cat "$work/sift.err"; echo "phoenix-e2e: sift did not start"; exit 1; }

answer=$(curl -fsS -X POST "$url/user" -H 'content-type: application/json' \
    -d '{"query": "Daniel is a 24 year man living in New York City"}')
echo "phoenix-e2e: /user answered $answer"

# SIGTERM: sift flushes its spans before it exits.
kill -TERM "$sift_pid"
wait "$sift_pid"
sift_pid=""

echo "phoenix-e2e: reading the spans back from Phoenix"
for _ in $(seq 30); do
    if curl -fsS "http://127.0.0.1:$PORT/v1/projects/$PROJECT/spans?limit=100" >"$work/spans.json" 2>/dev/null \
        && python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; sys.exit(0 if any(s["name"].startswith("chat ") for s in d) else 1)' "$work/spans.json"; then
        break
    fi
    sleep 1
done

python3 - "$work/spans.json" <<'EOF'
import json, sys
spans = json.load(open(sys.argv[1]))["data"]
by_id = {s["context"]["span_id"]: s for s in spans}
chat = [s for s in spans if s["name"].startswith("chat ")]
assert chat, f"no chat span among {[s['name'] for s in spans]}"
chat = chat[0]
a = chat["attributes"]
problems = []
if chat["span_kind"] != "LLM":
    problems.append(f"span_kind is {chat['span_kind']}, not LLM")
for key in ("llm.token_count.prompt", "llm.token_count.completion"):
    if not (isinstance(a.get(key), int) and a[key] > 0):
        problems.append(f"{key} = {a.get(key)!r}")
for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
    if not (isinstance(a.get(key), int) and a[key] > 0):
        problems.append(f"{key} = {a.get(key)!r}")
parent = by_id.get(chat["parent_id"])
if not parent or not parent["name"].startswith("extract "):
    problems.append(f"chat parent is {parent and parent['name']}")
else:
    grand = by_id.get(parent["parent_id"])
    if not grand or grand["name"] != "POST /user":
        problems.append(f"extract parent is {grand and grand['name']}")
if problems:
    print("phoenix-e2e: FAILED:\n  " + "\n  ".join(problems))
    print(json.dumps(chat, indent=1))
    sys.exit(1)
print(f"phoenix-e2e: ok: '{chat['name']}' is an LLM span with "
      f"{a['llm.token_count.prompt']} prompt and {a['llm.token_count.completion']} completion tokens, "
      f"under '{parent['name']}' under 'POST /user' ({len(spans)} spans in the project)")
EOF
