#!/usr/bin/env bash
# Every GPU measurement the open issues wait for, in one device call (about 9 minutes), from the repository
# root on the device machine. Each part has its own time limit, so one failure does not cost the others.
# What comes back ($OUT, at most 8 files): summary.txt (the card, each part's exit code), log.txt (all
# output) and one JSON per part, to be copied into benchmarks/results/ and benchmarks/RESULTS.md.
#
# The device image has torch and triton but not diffusers: before the call, here,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       diffusers==0.42.1 importlib_metadata
# and call the device with carry [".whl"] and the command `bash benchmarks/gpu_session.sh`.
set -u
OUT=${OUT:-/tmp/seed-gpu}
mkdir -p "$OUT"
PYTHONPATH=$(ls -d packages/*/src | paste -sd:)
export PYTHONPATH PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/summary.txt" 2>&1

part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" >>"$OUT/log.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$OUT/log.txt" 2>&1
    echo "$name exit $? in $((SECONDS - start)) s" >>"$OUT/summary.txt"
}

part attention 110 python3 benchmarks/attention.py --gpu-only --json "$OUT/attention-gpu.json"   # issue 5
part quant 100 python3 benchmarks/quant.py --gpu-only --json "$OUT/quant-gpu.json"                 # issue 7
part restore 140 python3 benchmarks/restore.py --gpu --json "$OUT/restore-gpu.json"                # issue 8
part diffusers-flux 110 python3 benchmarks/diffusers_interop.py --gpu --model flux \
    --json "$OUT/diffusers-gpu-flux.json"                                                           # issue 9
part diffusers-wan 100 python3 benchmarks/diffusers_interop.py --gpu --model wan --frames 33 \
    --json "$OUT/diffusers-gpu-wan.json"                                                            # issue 9
cat "$OUT/summary.txt"
