#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the report rendering check (issue #6).
#
# Idempotent: does nothing when a chromium binary is already present.
#   EQUINOX_CHROMIUM   path of an existing Chromium to use instead (checked, not installed)
set -euo pipefail
for candidate in "${EQUINOX_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "setup_chromium: $candidate already installed"
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "setup_chromium: installing chromium with apt-get"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
