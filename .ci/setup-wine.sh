#!/usr/bin/env bash
# The Windows tests' real parts: Wine, the official embeddable Windows CPython 3.13 and pywin32 312
# (the shared wine-python-env.sh: apt-installs Wine on a fresh Debian 12, ~30-50 s; ~1 s when up),
# and servicehost installed into that Windows Python as an editable install — a .pth naming this
# checkout's src/, what `pip install -e` writes — so the SCM's service processes run the code under
# test. Idempotent. .ci/run runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${SERVICEHOST_TOOLS:-$(cd .. && pwd)/shared/tools}
env_sh="$tools/wine-python-env.sh"
[ -f "$env_sh" ] || { echo "setup-wine: $env_sh not found (set SERVICEHOST_TOOLS)" >&2; exit 1; }
eval "$(bash "$env_sh" up)"
src_win="Z:$(pwd)/src"
printf '%s\r\n' "${src_win//\//\\}" > "$WINPY_SITE_PACKAGES/servicehost-checkout.pth"
# The Windows Python must import this checkout, and must not import pywin32 for `import servicehost`.
out=$(bash "$env_sh" py -c "import sys, servicehost, servicehost.platforms.windows as w; print(servicehost.__file__); print(any(m.startswith('win32') for m in sys.modules))" </dev/null | tr -d '\r')
echo "setup-wine: servicehost in the Windows Python: $(echo "$out" | head -1)"
case "$out" in
  *"${src_win//\//\\}"*False*) ;;
  *) echo "setup-wine: the Windows Python does not import this checkout: $out" >&2; exit 1 ;;
esac
