#!/usr/bin/env bash
# Set up (once) and run the main example: a drop-folder service that hashes and compresses every
# file dropped into its folder on a thread pool and records each in SQLite. Ctrl-C stops it.
# Its arguments go to the service: bash scripts/demo.sh --log-level debug --drop-dir /srv/in
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { printf 'demo: %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version 2>&1) (once)"
  "$PYTHON" -m venv .venv
fi
# Installed already (editable, from this checkout)? Then there is nothing to wait for.
if ! [ -x .venv/bin/servicehost ] || ! .venv/bin/python - <<'EOF' 2>/dev/null
import pathlib, sys
import servicehost
sys.exit(pathlib.Path(servicehost.__file__).resolve().parent != pathlib.Path("src/servicehost").resolve())
EOF
then
  say "installing servicehost into .venv (pip install -e .; the first time takes up to a minute or two)"
  .venv/bin/python -m pip install --disable-pip-version-check -e . 2>&1 | sed -u 's/^/demo: pip: /' >&2
  say "installed"
fi

# Where this run keeps its files: what `servicehost settings` says for the same arguments.
settings=$(.venv/bin/servicehost settings examples/drop_folder.py "$@")
value() { sed -n "s/^$1 = \\(.*[^ ]\\) *# .*/\\1/p" <<<"$settings"; }
state=$(value state_dir)
drop=$(value drop_dir); drop=${drop:-$state/drop}
out=$(value out_dir); out=${out:-$state/out}
database=$(value database); database=${database:-$state/files.sqlite3}
say "state in $state"
say "drop a test file, in another terminal:  cp README.md $drop/"
say "then look at: $out/<sha256>.gz and $database (a summary is logged every few seconds; Ctrl-C stops)"
exec .venv/bin/servicehost run examples/drop_folder.py "$@"
