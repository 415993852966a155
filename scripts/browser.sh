#!/usr/bin/env bash
# Debian's Chromium + ChromeDriver for tests/integration/test_html_browser.py (the HTML report opened
# headless). Installed when missing and apt-get can run; otherwise that test skips with its reason.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "browser.sh: no apt-get; the browser test will skip"; exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "browser.sh: not root; the browser test will skip (apt-get install chromium chromium-driver)"; exit 0; fi
fi
echo "browser.sh: installing chromium and chromium-driver (Debian)"
( $SUDO apt-get update -qq || true ) >/dev/null 2>&1
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
  || echo "browser.sh: apt-get install failed; the browser test will skip"
exit 0
