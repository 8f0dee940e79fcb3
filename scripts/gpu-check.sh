#!/usr/bin/env bash
# The GPU check of issue 14, for a GPU machine without internet, in at most 10 minutes:
#
#   scripts/gpu-check.sh OUTDIR [BUNDLE]
#
# 1. tests:   the CUDA tests (pytest -k cuda);
# 2. chapter: the paper-scale Fig. 2(a) chapter (book/negative_eigenvalues.md) through
#             papermill, as `make book` executes it; then its follow-up book/curved_floor.md,
#             which reads the same runs back, if at least GPU_CHECK_FOLLOW_UP seconds are left;
# 3. bench:   scripts/bench_curvature.py --device cuda.
#
# BUNDLE is what scripts/fetch-gpu-wheels.sh gathered: BUNDLE/wheels (papermill, jupytext,
# nbclient, ipykernel and their dependencies, and the benchmark's PyHessian and curvlinops,
# installed with pip --no-index when missing) and
# BUNDLE/data ($HESSNOISE_DATA: Fashion-MNIST stands in for MNIST where MNIST is not there).
# A folder of wheels alone works too.  Downloads are off (HESSNOISE_OFFLINE=1).
#
# Written under OUTDIR: gpu-check.log (everything printed), summary.md, curvature-cuda.json,
# and per chapter <chapter>.json (checks, metrics, provenance) and <chapter>.ipynb; scratch
# (converted notebooks, checkpoints) under OUTDIR/work, or GPU_CHECK_WORK, where a second
# call resumes the chapter's runs from their checkpoints.
#
# With this workplace's device tool: here, scripts/fetch-gpu-wheels.sh .gpu (git ignores it);
# there, `bash scripts/gpu-check.sh $OUT .gpu` with carry [".gpu"] and timeout_s 600.
#
# Settings (environment): GPU_CHECK_BUDGET seconds in all (560), GPU_CHECK_STAGES (tests,
# chapter,bench), GPU_CHECK_DEVICE (cuda; cpu for a dry run), GPU_CHECK_SCALE (paper; smoke for
# a dry run), GPU_CHECK_FOLLOW_UP (90), GPU_CHECK_BENCH_ARGS (--repeats 3 --exact-repeats 2),
# PYTHON (python3).
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
bundle=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET:-560}
stages=${GPU_CHECK_STAGES:-tests,chapter,bench}
device=${GPU_CHECK_DEVICE:-cuda}
scale=${GPU_CHECK_SCALE:-paper}
follow_up=${GPU_CHECK_FOLLOW_UP:-90}
read -r -a bench_args <<<"${GPU_CHECK_BENCH_ARGS:---repeats 3 --exact-repeats 2}"
work=${GPU_CHECK_WORK:-$out/work}
mkdir -p "$work"
log=$out/gpu-check.log
table=$work/stages.tsv
: >"$log"
: >"$table"
start=$(date +%s)

left() { echo $((budget - ($(date +%s) - start))); }
say() { echo "[gpu-check] $*" | tee -a "$log"; }
# run_stage NAME LIMIT_SECONDS COMMAND...: at most LIMIT (and what the budget has left);
# status and seconds go to the stage table, output to the log.
run_stage() {
    local name=$1 limit=$2 t0 rc
    shift 2
    if [ "$(left)" -lt "$limit" ]; then limit=$(left); fi
    if [ "$limit" -le 5 ]; then
        say "$name: skipped, the budget is spent"
        printf '%s\tskipped\t0\n' "$name" >>"$table"
        return 0
    fi
    say "$name: at most ${limit} s"
    echo "$*" >>"$log"
    t0=$(date +%s)
    timeout --kill-after=15 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    local status=passed
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timeout; elif [ "$rc" -ne 0 ]; then status="failed ($rc)"; fi
    printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" >>"$table"
    say "$name: $status after $(($(date +%s) - t0)) s"
}
wants() { [[ ",$stages," == *",$1,"* ]]; }

export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export HESSNOISE_OFFLINE=${HESSNOISE_OFFLINE:-1}
wheels=$bundle
if [ -n "$bundle" ] && [ -d "$bundle/wheels" ]; then wheels=$bundle/wheels; fi
if [ -z "${HESSNOISE_DATA:-}" ] && [ -n "$bundle" ] && [ -d "$bundle/data" ]; then
    mkdir -p "$work/data" && cp -r "$bundle/data/." "$work/data/"  # the loaders write beside it
    export HESSNOISE_DATA=$work/data
fi

say "repo $root, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "budget ${budget} s, stages $stages, device $device, scale $scale, data ${HESSNOISE_DATA:-default}"
{
    command -v nvidia-smi >/dev/null && nvidia-smi -L
    "$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
} >>"$log" 2>&1

if ! "$py" -c "import papermill, jupytext, nbclient, ipykernel" 2>/dev/null; then
    if [ -z "$wheels" ] || [ ! -d "$wheels" ]; then
        say "papermill, jupytext, nbclient or ipykernel is missing and no wheel folder was given"
        say "(run scripts/fetch-gpu-wheels.sh DIR where PyPI is reachable, then pass DIR)"
        exit 1
    fi
    say "installing papermill, jupytext, nbclient, ipykernel from $wheels"
    if ! "$py" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$wheels" papermill jupytext nbclient ipykernel >>"$log" 2>&1; then
        say "pip could not install them from $wheels: see $log"
        exit 1
    fi
fi

if wants bench && ! "$py" -c "import pyhessian, curvlinops" 2>/dev/null; then
    if [ -n "$wheels" ] && [ -d "$wheels" ] && "$py" -m pip install --quiet \
        --disable-pip-version-check --no-index --find-links "$wheels" \
        -r "$root/requirements-bench.txt" >>"$log" 2>&1; then
        say "installed PyHessian and curvlinops from $wheels"
    else
        say "PyHessian or curvlinops missing: the benchmark leaves their rows empty"
    fi
fi

if wants tests; then
    run_stage tests 120 "$py" -m pytest -q -p no:cacheprovider -k cuda "$root/tests"
fi

chapter() {  # chapter NAME: execute book/NAME.md at $scale on $device, copy what it wrote
    local name=$1
    run_stage "$name" "$2" "$py" -c "
import sys
from pathlib import Path
from hessnoise import book
try:
    r = book.execute_chapter(Path('$root'), 'book/$name', scale='$scale', device='$device',
                             seed=0, build_dir=Path('$work/_build'))
except book.BookError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
print(f'$name executed in {r.seconds:.1f} s')
"
    cp "$work/_build/results/$scale/$name.json" "$out/" 2>/dev/null
    cp "$work/_build/executed/$scale/$name.ipynb" "$out/" 2>/dev/null
}
if wants chapter; then
    reserve=0
    if wants bench; then reserve=90; fi
    chapter negative_eigenvalues $(($(left) - reserve))
    if [ "$(left)" -ge $((follow_up + reserve)) ]; then
        chapter curved_floor $(($(left) - reserve))
    else
        say "curved_floor: skipped, under $((follow_up + reserve)) s left"
        printf 'curved_floor\tskipped\t0\n' >>"$table"
    fi
fi

if wants bench; then
    run_stage bench "$(left)" "$py" "$root/scripts/bench_curvature.py" --device "$device" \
        "${bench_args[@]}" --out "$out/curvature-$device.json"
fi

"$py" "$root/scripts/gpu_check_summary.py" "$out" "$table" "$scale" "$device" \
    "$(($(date +%s) - start))" >>"$log" 2>&1 || say "the summary could not be written: see $log"
say "done in $(($(date +%s) - start)) s: $out/summary.md"
! grep -qE $'\t(failed|timeout)' "$table"
