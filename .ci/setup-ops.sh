#!/usr/bin/env bash
# The parts the operations-view tests need (tests/ops/): a real headless browser and a real
# Prometheus, from Debian's packages (idempotent: installs only what is missing, and runs
# apt-get update only then). Browsers cannot be downloaded here: no selenium-manager, no
# Chrome for Testing; selenium (pip, the test extra) drives Debian's chromium through its driver.
#
#   /usr/bin/chromium          the status page, rendered headless             chromium
#   /usr/bin/chromedriver      selenium's WebDriver for it (same version)     chromium-driver
#   /usr/bin/prometheus        scrapes /metrics of a running example         prometheus
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
have prometheus || need+=(prometheus)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-ops: missing ${need[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup-ops: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's prometheus package starts a system-wide instance: the tests run their own, on their own
# port and data directory, and never use it.
echo "setup-ops: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1); $(prometheus --version 2>&1 | head -n1)"
