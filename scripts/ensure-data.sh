#!/bin/sh
# Make Fashion-MNIST available to hessnoise.data: Debian's dataset-fashion-mnist package, or
# the idx files under $HESSNOISE_DATA/FashionMNIST/raw.  Installs the package when it can
# (root or password-less sudo, with apt-get); otherwise says what to do and fails.
PY=${PY:-.venv/bin/python}
if "$PY" -m hessnoise.data check; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "Installing Debian's dataset-fashion-mnist ..."
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
    if "$PY" -m hessnoise.data check; then exit 0; fi
  fi
fi
cat >&2 <<'MSG'
Fashion-MNIST is missing and could not be installed here. Do one of:
  sudo apt-get install dataset-fashion-mnist          (Debian/Ubuntu)
  mkdir -p "$HESSNOISE_DATA/FashionMNIST/raw" and copy the four idx files (plain or .gz) there
    (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)
MSG
exit 1
