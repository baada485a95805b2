#!/usr/bin/env bash
# Every GPU check and measurement of issues 3 and 7, in one run (about 8-10
# minutes on one H200). Meant for a lent GPU machine that has PyTorch and
# scikit-learn but no package index: run it from the repository root.
#
#   bash benchmarks/gpu_session.sh            # writes logs and JSON to $OUT
#   GPU_SESSION_DRY=1 bash benchmarks/gpu_session.sh   # seconds, on a CPU
#
# skorch (the benchmarks' comparison) is pure Python; where it is missing,
# carry its wheel in .whl/ (e.g. `pip download --no-deps -d .whl skorch`) and
# this script installs it into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_session}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

status=0
step() {  # step NAME COMMAND...: run, keep its log in $OUT, remember failures
    local name=$1
    shift
    echo "=== $name: $*" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}

"$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" \
    | tee "$OUT/summary.txt"
if [ -n "${GPU_SESSION_DRY:-}" ]; then
    step cuda_tests "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_capture.py
    step bench_gpu "$PY" benchmarks/bench_gpu.py --dry-run --out "$OUT/gpu.json"
    step bench_vectorized "$PY" benchmarks/bench_vectorized.py --quick --members 4
else
    # The CUDA tests (test_cuda.py and the CUDA cases of the other files).
    step cuda_tests "$PY" -m pytest -q -p no:cacheprovider -m cuda tests
    # Issue 3: matmul ceilings, small and large networks, prediction, agreement.
    step bench_gpu "$PY" benchmarks/bench_gpu.py --out "$OUT/gpu.json"
    # Issue 7: the 5 x 20 search against GridSearchCV on the GPU, and the
    # engine's model-samples/s for 16, 64 and 256 members.
    step bench_vectorized "$PY" benchmarks/bench_vectorized.py --device cuda \
        --members 16 64 256
fi
exit $status
