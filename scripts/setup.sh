#!/usr/bin/env bash
# Installs what sift's build and tests need, when it is missing. Quick when nothing is.
set -euo pipefail

# llama.cpp (the embedded model) is compiled from source: cmake and a C/C++ toolchain, and
# libclang for its bindings.
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
# The pages' tests drive a real browser: Debian's headless Chromium and its WebDriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v clang >/dev/null 2>&1 || need+=(clang)
if command -v dpkg >/dev/null 2>&1; then
  dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
elif ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The seed's Python client (requests) is run against /extract in the tests; the served OpenAPI
# document is checked by openapi-spec-validator, used by a client openapi-python-client
# generates, and run by schemathesis (every check, NDJSON and SSE); scripts/jsonschemabench.py
# re-checks answers with jsonschema. pip also fetches the default model on first use.
if ! python3 -c 'import requests, openapi_spec_validator, openapi_python_client, jsonschema, schemathesis' 2>/dev/null \
  || ! command -v schemathesis >/dev/null; then
  echo "setup: installing the Python packages requests, openapi-spec-validator, openapi-python-client, jsonschema, schemathesis"
  python3 -m pip install --quiet requests openapi-spec-validator openapi-python-client jsonschema schemathesis
fi

# The OpenAI-compatible gateway's tests run real clients against `sift serve`, each set in a
# virtualenv of its own: instructor's pins of openai and jiter exclude the openai that
# pydantic-ai needs. Versions are pinned so a new release cannot change what is tested; a
# virtualenv is rebuilt when its list changes.
clients="${SIFT_CLIENTS_DIR:-$HOME/.cache/sift/clients}"
client_venv() {
  local name="$1"
  shift
  local stamp
  stamp="$clients/$name/.sift-$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "setup: making the $name client virtualenv ($*)"
  rm -rf "${clients:?}/$name"
  mkdir -p "$clients"
  python3 -m venv "$clients/$name"
  "$clients/$name/bin/pip" install --quiet --disable-pip-version-check "$@"
  touch "$stamp"
}
client_venv sdk "openai==3.63.0" "pydantic-ai-slim[openai]==2.78.0" "langchain-openai==1.8.1"
client_venv instructor "instructor==1.17.0" "openai==3.3.0"
# Selenium, which drives Chromium for the pages' tests (crates/sift-cli/tests/browser).
client_venv browser "selenium==4.38.0"
