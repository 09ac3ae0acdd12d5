#!/usr/bin/env bash
# Downloads the wheels that the GPU image lacks (see tests/gpu/suite.sh) into .gpu-wheels/:
# cp312, manylinux x86_64, each dependency named explicitly with --no-deps, so that exactly these
# files travel and `pip install --no-index --no-deps --target DIR .gpu-wheels/*.whl` works offline.
# Every Requires-Dist of these wheels is either in this list or already in the GPU image
# (PyYAML, typing-extensions, torch, triton; checked with `unzip -p W '*/METADATA' | grep ^Requires-Dist`).
#
#   bash tests/gpu/wheels.sh            # run here, where PyPI is reachable
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=(
  zstandard==0.25.0          # corpus readers (tokenizer/corpus.py) and the data tests
  jsonargparse==4.53.0       # `slm pretrain` (LightningCLI), with its [signatures] extra:
  docstring-parser==0.18.0   #   jsonargparse[signatures]
  typeshed-client==2.15.0    #   jsonargparse[signatures]
  liger-kernel==0.8.5        # fused RMSNorm/rotary/SwiGLU and fused linear cross-entropy
  torchao==0.17.0            # float8 training; 0.17 is the release paired with torch 2.11
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
mkdir -p .gpu-wheels
rm -f .gpu-wheels/*.whl
names=()
for spec in "${WHEELS[@]}"; do names+=("${spec%%#*}"); done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]/#/--platform=}" -d .gpu-wheels "${names[@]}"
total=0
for wheel in .gpu-wheels/*.whl; do
  size=$(stat -c %s "$wheel"); total=$((total + size))
  printf '%-70s %8.1f KiB\n' "$(basename "$wheel")" "$(echo "$size / 1024" | bc -l)"
done
printf 'total %.1f MiB in %s\n' "$(echo "$total / 1048576" | bc -l)" .gpu-wheels
[ "$total" -lt $((60 * 1048576)) ] || { echo "error: .gpu-wheels is over 60 MiB" >&2; exit 1; }
