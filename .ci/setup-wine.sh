#!/usr/bin/env bash
# The Windows tests' real parts: Wine, the official embeddable Windows CPython 3.13 and pywin32 312
# (the shared wine-python-env.sh: apt-installs Wine on a fresh Debian 12, ~30-50 s; ~1 s when up),
# and servicehost installed into that Windows Python as an editable install — a .pth naming this
# checkout's src/, what `pip install -e` writes — so the SCM's service processes run the code under
# test. Idempotent. .ci/run runs it before the tests.
#
# CI owns the machine while it runs, so it starts Wine from a clean slate: Wine processes left by an
# earlier run (a killed session's services, a wineserver on its way out) are ended first. Bringing
# Wine up is guarded: a Wine that hangs (its first process waiting on system processes that never
# answer) is ended and brought up once more, then from a fresh prefix, instead of holding CI for
# its whole time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${SERVICEHOST_TOOLS:-$(cd .. && pwd)/shared/tools}
env_sh="$tools/wine-python-env.sh"
[ -f "$env_sh" ] || { echo "setup-wine: $env_sh not found (set SERVICEHOST_TOOLS)" >&2; exit 1; }
guard=${SETUP_WINE_GUARD:-600}  # seconds for one `up`; a fresh machine needs ~50 s (apt, downloads, wineboot)

wine_pids() {  # the wineserver and every Windows process: their executable is one of Wine's own
  local d exe
  for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$exe" in */wine/*|*/wine|*/wine64|*/wine-preloader|*/wine64-preloader|*/wineserver*)
      echo "${d#/proc/}" ;;
    esac
  done
}

end_wine() {  # stop the services through the SCM where it answers, then end whatever Wine is left
  local left
  timeout -k 5 60 bash "$env_sh" stop </dev/null >/dev/null 2>&1 || true
  left=$(wine_pids)
  if [ -n "$left" ]; then
    echo "setup-wine: ending Wine processes left over: $(echo $left)"
    kill -9 $left 2>/dev/null || true
    sleep 1
  fi
}

up() {  # `up` with its exports written to a file: no pipe for a stray process to hold open
  local out rc=0
  out=$(mktemp)
  timeout -k 10 "$guard" bash "$env_sh" up </dev/null >"$out" || rc=$?
  if [ "$rc" -eq 0 ]; then
    eval "$(cat "$out")"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "setup-wine: wine-python-env.sh up did not finish within ${guard} s" >&2
  else
    echo "setup-wine: wine-python-env.sh up failed (exit $rc)" >&2
  fi
  rm -f "$out"
  return "$rc"
}

end_wine
if ! up; then
  end_wine
  echo "setup-wine: bringing Wine up again" >&2
  if ! up; then
    end_wine
    echo "setup-wine: bringing Wine up again from a fresh prefix (the download cache is kept)" >&2
    timeout -k 5 120 bash "$env_sh" purge </dev/null >/dev/null 2>&1 || true
    up || { echo "setup-wine: Wine could not be brought up three times; giving up" >&2; exit 1; }
  fi
fi

src_win="Z:$(pwd)/src"
printf '%s\r\n' "${src_win//\//\\}" > "$WINPY_SITE_PACKAGES/servicehost-checkout.pth"
# The Windows Python must import this checkout, and must not import pywin32 for `import servicehost`.
out=$(timeout -k 10 300 bash "$env_sh" py -c "import sys, servicehost, servicehost.platforms.windows as w; print(servicehost.__file__); print(any(m.startswith('win32') for m in sys.modules))" </dev/null | tr -d '\r') || true
echo "setup-wine: servicehost in the Windows Python: $(echo "$out" | head -1)"
case "$out" in
  *"${src_win//\//\\}"*False*) ;;
  *) echo "setup-wine: the Windows Python does not import this checkout: $out" >&2; exit 1 ;;
esac
