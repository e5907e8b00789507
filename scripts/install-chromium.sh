#!/usr/bin/env bash
# Installs the browser the dashboard tests drive: Debian's chromium and chromium-driver
# (/usr/bin/chromium, /usr/bin/chromedriver), from the distribution's own archive, never from a
# browser downloader. Debian ships the two packages at the same version, which the distribution
# release (and its security updates) pins; the version installed is printed. Needs root (CI
# and this project's machines run as root) or passwordless sudo.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  /usr/bin/chromium --version
  exit 0
fi
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver; }
# A fresh machine may have stale package lists: refresh them once if the install fails.
install || { $sudo apt-get update -q && install; }
/usr/bin/chromium --version
/usr/bin/chromedriver --version
