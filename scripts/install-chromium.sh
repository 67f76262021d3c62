#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test of `rlhf annotate` (test/annotate/browser.test.ts,
# driven by playwright-core). Without apt-get or root it only says so: that test then skips with a
# message (or point CHROMIUM_PATH at a Chromium you installed).
set -euo pipefail
for c in chromium chromium-browser; do
  if command -v "$c" >/dev/null 2>&1; then
    echo "install-chromium: $c already installed ($("$c" --version 2>/dev/null | tail -1))"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium yourself (and set CHROMIUM_PATH) to run the browser test" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-chromium: not root and no password-less sudo; the browser test will skip" >&2
    exit 0
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
echo "install-chromium: $(chromium --version 2>/dev/null | tail -1)"
