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
# zstandard: corpus readers and data tests. jsonargparse: `slm pretrain` (LightningCLI), with its
# [signatures] extra's docstring-parser and typeshed-client. liger-kernel: fused RMSNorm / rotary /
# SwiGLU and linear cross-entropy. torchao: float8 (0.17 is the release built for torch 2.11).
WHEELS=(zstandard==0.25.0 jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
        liger-kernel==0.8.5 torchao==0.17.0)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
mkdir -p .gpu-wheels
rm -f .gpu-wheels/*.whl
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]/#/--platform=}" -d .gpu-wheels "${WHEELS[@]}"
ls -l .gpu-wheels/*.whl | awk '{ total += $5; printf "%-78s %9.1f KiB\n", $9, $5 / 1024 }
  END { printf "total %.1f MiB\n", total / 1048576; if (total >= 60 * 1048576) { print "error: over 60 MiB"; exit 1 } }'
