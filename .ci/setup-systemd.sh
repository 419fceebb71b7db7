#!/usr/bin/env bash
# The systemd parts the systemd tests need on a fresh Debian 12 machine (idempotent: installs only
# what is missing, and runs apt-get update only then). systemd need not be running: the tests boot
# their own with ../shared/tools/with-systemd.sh.
#
#   systemd-analyze verify / security   verify-unit.sh and the exposure score   systemd
#   /lib/systemd/systemd, systemctl, journalctl   with-systemd.sh                systemd
#   unshare, nsenter, setsid, findmnt, pivot_root   with-systemd.sh, verify-unit.sh   util-linux
#   script                              with-systemd.sh (console pty)            bsdutils
#   mount                               with-systemd.sh                          mount
#   awk, find, mknod, timeout           with-systemd.sh                          mawk, findutils, coreutils
#   /usr/bin/python3 (>= 3.11)          the service's venv in the real tests: a DynamicUser=
#                                       account cannot reach an interpreter under /root   python3
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have systemd-analyze && have systemctl && have journalctl && [ -x /lib/systemd/systemd ] || need+=(systemd)
have unshare && have nsenter && have setsid && have findmnt && have pivot_root || need+=(util-linux)
have script || need+=(bsdutils)
have mount || need+=(mount)
have awk || need+=(mawk)
have find || need+=(findutils)
have mknod && have timeout || need+=(coreutils)
if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))'; }; then
  need+=(python3)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-systemd: missing ${need[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup-systemd: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Kernel features with-systemd.sh needs (nothing to install: report clearly if absent).
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || echo "setup-systemd: warning: no overlayfs" >&2
grep -qw cgroup2 /proc/filesystems || echo "setup-systemd: warning: no cgroup2" >&2
echo "setup-systemd: $(systemctl --version | head -n1); $(/usr/bin/python3 --version)"
