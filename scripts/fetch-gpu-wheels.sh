#!/usr/bin/env bash
# Gather, on a machine with internet, what scripts/gpu-check.sh needs on a GPU machine without:
#
#   scripts/fetch-gpu-wheels.sh DIR [PYTHON_VERSION]
#
#   DIR/wheels/  papermill, jupytext, nbclient and ipykernel (the versions of requirements.txt)
#                with every dependency, and the benchmark's PyHessian and curvlinops
#                (requirements-bench.txt) with what a PyTorch image lacks of theirs, as wheels
#                for CPython PYTHON_VERSION (default 3.12, the GPU image's) on manylinux x86-64;
#   DIR/data/    Fashion-MNIST (from $HESSNOISE_DATA or Debian's dataset-fashion-mnist), and
#                MNIST too when this machine has torchvision's files for it, in torchvision's
#                layout: the GPU machine's $HESSNOISE_DATA.
#
# Then, on the GPU machine: scripts/gpu-check.sh OUTDIR DIR.  Nothing is installed here.
# For the device tool: fetch into .gpu (ignored by git) and name it in `carry`.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
fi
dir=$1
pyver=${2:-3.12}
case $pyver in
    3.[0-9]|3.[0-9][0-9]) ;;
    *) echo "PYTHON_VERSION=$pyver: expected a CPython version such as 3.12" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}

# The book's own pins, so that the GPU machine executes chapters as `make book` does.
mapfile -t pins < <(grep -E '^(papermill|jupytext|ipykernel)==' "$root/requirements.txt")
if [ "${#pins[@]}" -ne 3 ]; then
    echo "requirements.txt must pin papermill, jupytext and ipykernel; found: ${pins[*]}" >&2
    exit 1
fi
mkdir -p "$dir/wheels"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_12_x86_64 manylinux2010_x86_64 \
    manylinux_2_5_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
target=(--python-version "$pyver" --implementation cp --abi "cp${pyver/./}" "${platforms[@]}")
"$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: "${target[@]}" \
    -d "$dir/wheels" "${pins[@]}" nbclient
# The benchmark's comparison libraries and what the GPU image lacks of their dependencies
# (with a few it has, in case an image lacks them): all pure Python; torch, torchvision, numpy
# and scipy are the image's own.
mapfile -t bench < <(grep -E '^[A-Za-z]' "$root/requirements-bench.txt")
"$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    "${target[@]}" -d "$dir/wheels" "${bench[@]}" backpack-for-pytorch einconv unfoldNd einops \
    linear-operator opt-einsum jaxtyping wadler-lindig
echo "wheels: $(find "$dir/wheels" -name '*.whl' | wc -l) in $dir/wheels ($(du -sh "$dir/wheels" | cut -f1))"

# The data.  torchvision's layout: <root>/FashionMNIST/raw/*.gz, <root>/MNIST/raw/*.
data_root=${HESSNOISE_DATA:-$HOME/.cache/hessnoise/data}
# Compressed files first: they are what fits the device tool's 64 MiB (about 30 MB).
fashion=""
for pattern in "$data_root/FashionMNIST/raw/*-ubyte.gz" "/usr/share/datasets/fashion-mnist/*-ubyte.gz" \
    "$data_root/FashionMNIST/raw/*-ubyte"; do
    # shellcheck disable=SC2086  # the pattern is meant to glob
    set -- $pattern
    if [ "$#" -eq 4 ] && [ -e "$1" ]; then
        fashion=("$@")
        break
    fi
done
if [ -z "${fashion[*]}" ]; then
    echo "Fashion-MNIST not found (\$HESSNOISE_DATA/FashionMNIST/raw or Debian's" \
        "dataset-fashion-mnist): the GPU machine will need it for the paper-scale chapter" >&2
else
    mkdir -p "$dir/data/FashionMNIST/raw"
    cp "${fashion[@]}" "$dir/data/FashionMNIST/raw/"
    echo "data: Fashion-MNIST from $(dirname "${fashion[0]}")"
fi
if ls "$data_root/MNIST/raw"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    mkdir -p "$dir/data/MNIST/raw"
    cp "$data_root/MNIST/raw"/*-ubyte* "$dir/data/MNIST/raw/"
    echo "data: MNIST from $data_root/MNIST/raw (the chapter will use it)"
else
    echo "data: no MNIST here: Fashion-MNIST at 14x14 will stand in, and the results say so"
fi
echo "total: $(du -sh "$dir" | cut -f1) in $dir"
