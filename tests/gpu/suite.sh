#!/usr/bin/env bash
# The one-command GPU suite (issue #21): environment, correctness, throughput, the real
# `slm pretrain` path, a profile and predicted-vs-measured memory, in at most 9 minutes on one
# H100/H200. Writes OUTDIR/suite.json, OUTDIR/table.md (README-ready, printed last) and
# OUTDIR/suite.log. Each step runs in its own process group under its own time limit; a failed
# or timed-out step does not stop the others, and suite.json is rewritten after every step.
#
#   bash tests/gpu/wheels.sh                  # here, with network: .gpu-wheels/ (git-ignored)
#   bash tests/gpu/suite.sh OUTDIR            # on the GPU machine, .gpu-wheels carried along
#   bash tests/gpu/suite.sh OUTDIR --rehearse # the same script on a CPU: debug shapes, seq 128
#
# No network is used. The wheels in .gpu-wheels/ are installed with
# `pip install --no-index --no-deps --target TMP` and TMP goes first on PYTHONPATH.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
usage() { echo "usage: bash tests/gpu/suite.sh OUTDIR [--rehearse]" >&2; exit 2; }
OUTDIR="" REHEARSE=""
for arg in "$@"; do
  case "$arg" in
    --rehearse) REHEARSE=--rehearse ;;
    -*) usage ;;
    *) [ -z "$OUTDIR" ] || usage; OUTDIR=$arg ;;
  esac
done
[ -n "$OUTDIR" ] || usage
mkdir -p "$OUTDIR" || { echo "error: cannot create the output directory ($OUTDIR)" >&2; exit 2; }
OUTDIR=$(cd "$OUTDIR" && pwd)

PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
# Compiled kernels are cached across the suite's processes (the FX graph cache): later runs of
# the same block compile in seconds.
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor

# The wheels the GPU image lacks (tests/gpu/wheels.sh). They are cp312 wheels: on another Python
# (a CPU rehearsal on 3.11, say) they are installed for 3.12 to prove the set is complete, but not
# put on PYTHONPATH, where they would shadow that Python's own packages.
WHEELS_NOTE="no .gpu-wheels/ directory"
shopt -s nullglob
wheels=("$ROOT"/.gpu-wheels/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  SITE=$WORK/site
  pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [ "$pyver" = "3.12" ]; then
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
         "${wheels[@]}" >"$WORK/pip.log" 2>&1; then
      export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
      WHEELS_NOTE="installed ${#wheels[@]} wheels into $SITE (on PYTHONPATH)"
    else
      WHEELS_NOTE="pip install of .gpu-wheels failed: $(tail -n 1 "$WORK/pip.log")"
    fi
  else
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
         --only-binary=:all: --python-version 3.12 --implementation cp \
         --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
         "${wheels[@]}" >"$WORK/pip.log" 2>&1; then
      WHEELS_NOTE="installed ${#wheels[@]} wheels for cp312 into $SITE; not on PYTHONPATH (this is Python $pyver)"
    else
      WHEELS_NOTE="pip install of .gpu-wheels (for cp312) failed: $(tail -n 1 "$WORK/pip.log")"
    fi
  fi
fi
export SLM_SUITE_WHEELS="$WHEELS_NOTE"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu suite: $WHEELS_NOTE" >&2

"$PYTHON" -m tests.gpu.suite run "$OUTDIR" --work "$WORK" $REHEARSE
