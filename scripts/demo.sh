#!/usr/bin/env bash
# Set up (once) and run the main example: a drop-folder service that hashes and compresses every
# file dropped into its folder on a thread pool and records each in SQLite. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/servicehost run examples/drop_folder.py "$@"
