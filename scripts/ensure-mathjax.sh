#!/bin/sh
# Install MathJax into node_modules/ with `npm ci`, at the version and checksum that
# package-lock.json records, so that the HTML book renders its formulas without a network.
# Installs npm with apt-get when it is missing and that is possible (root or password-less sudo).
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "Installing npm (Debian's package) for MathJax ..."
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q npm >/dev/null
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  cat >&2 <<'MSG'
npm is missing and could not be installed here; the HTML book needs it once, to install
MathJax (package.json) into node_modules/. Install Node.js with npm, then run `make vendor`.
MSG
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
