#!/bin/sh
# Make Debian's chromium available for the browser test (tests/test_browser.py), the way
# ensure-data.sh does for the data: install it when possible (root or password-less sudo, with
# apt-get); otherwise say what to do and fail (the test then skips, saying so).
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "Installing Debian's chromium ..."
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
    if command -v chromium >/dev/null 2>&1; then exit 0; fi
  fi
fi
echo "chromium is missing and could not be installed here: sudo apt-get install chromium" >&2
exit 1
