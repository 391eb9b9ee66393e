#!/usr/bin/env bash
# Installs what sift's build and tests need, when it is missing. Quick when nothing is.
set -euo pipefail

# The seed's Python client (requests) is run against /extract in the tests.
if ! python3 -c 'import requests' 2>/dev/null; then
  echo "setup: installing the Python package requests"
  python3 -m pip install --quiet requests
fi
