#!/usr/bin/env bash
# Every GPU figure of cnnlab in one run (bench/gpu_figures.py): bench/out/gpu.json and the
# Markdown table bench/out/gpu.md for bench/RESULTS.md. At most 8 minutes on one H200.
#
#   bash bench/gpu.sh                      # all parts whose data is here (GPU machine)
#   bash bench/gpu.sh --parts 1,2,4,5      # some of them
#   bash bench/gpu.sh --dry-run            # every part for a few steps on the CPU (tests the script)
#   bash bench/gpu.sh --pack fashion|cifar # here, before a device run: the data and wheels to carry
#
# The device machine has no network and gets only the checkout (64 MiB with what is carried),
# and its Python lacks pydantic, optuna and airbench: `--pack` puts the data in bench/data/ and
# those wheels (airbench's built from its sdist) in .whl/, both git-ignored, to carry with the
# run. CIFAR-10 (52.7 MiB packed) and Fashion-MNIST (29.5 MiB) do not fit in one call, so the
# figures take two: `--pack cifar` + `--parts 3`, then `--pack fashion` + `--parts 1,2,4,5`;
# gpu.json collects both. With $OUT set (the device tool), the results are copied there too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [ "${1:-}" = "--pack" ]; then
  what=${2:?--pack fashion or --pack cifar}
  rm -rf bench/data .whl && mkdir -p bench/data .whl
  names="pydantic pydantic-core annotated-types typing-inspection"
  if [ "$what" = cifar ]; then
    PYTHONPATH=$PWD "$PY" bench/cifar_airbench.py --pack bench/data/cifar10-jpeg.npz
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl airbench==0.1.8
  elif [ "$what" = fashion ]; then
    mkdir -p bench/data/fashion-mnist
    cp "${CNNLAB_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz bench/data/fashion-mnist/
    names="$names optuna alembic sqlalchemy colorlog mako"
  else
    echo "--pack: fashion or cifar, not '$what'" >&2; exit 2
  fi
  pins=$("$PY" -c "import sys, importlib.metadata as m; print(' '.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))" $names)
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl $pins
  du -sh bench/data .whl
  echo "carry: [\"bench/data\", \".whl\"]; run: bash bench/gpu.sh --parts $([ "$what" = cifar ] && echo 3 || echo 1,2,4,5)"
  exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then  # wheels carried to the device machine
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cnnlab-site .whl/*.whl
  export PYTHONPATH=/tmp/cnnlab-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export CNNLAB_CACHE_DIR=${CNNLAB_CACHE_DIR:-/tmp/cnnlab-cache}
status=0
timeout 480 "$PY" bench/gpu_figures.py "$@" || status=$?
if [ -n "${OUT:-}" ]; then cp bench/out/gpu*.json bench/out/gpu*.md "$OUT"/ 2>/dev/null || true; fi
exit $status
