#!/usr/bin/env bash
# Every GPU job the open issues wait for, from the repository root on the device machine. Each part has its
# own time limit, so one failure does not cost the others.
#
#   train      issue 4: seedream-mini continues from training/seedream-mini/live for $MINUTES minutes
#              (batch 512, scenes drawn by 12 worker processes, pooled-vector dropout 0.5, warmup then a
#              decay over the last 20%); its EMA and live weights come back as two fp16 bundles (13 MB each)
#   attention  issue 5, quant issue 7, restore issue 8: the GPU benchmarks, one JSON each
#
# PARTS="train attention" runs only those parts; MINUTES=4.0 trains longer. The parts' limits add up to
# 900 s at MINUTES=3.0, over one call's 600 s: split them over two calls on the warm machine; run
# PARTS=restore first (session 12: its six rows, small-GPU rows under an 8 GiB cap first, close issue 8's
# last claim on real hardware; about 60 s a row, each builds a 3B model in a fresh process). Session 11
# (the first with a GPU, an H200) ran: all parts (train failed, fixed since; quant 27 s; restore cut off
# at its limit after two of three rows), then PARTS="train attention" MINUTES=4.0 (train 255 s, 1,521
# steps at 6.3 steps/s; attention 33 s), then `benchmarks/attention.py --tune` (40 s).
# A call's start and transfers cost about 40-70 s of device time on top of the command.
#
# The working tree is over the device tool's 64 MiB: move packages/seed-mini/src/seed_mini/weights out of
# the checkout for the call (no part reads it) and put it back afterwards.
#
# What comes back ($OUT, 8 files): summary.txt (the card, each part's exit code), log.txt (all output),
# dit-log.jsonl (the training loss curve), the two bundles and the three JSONs. Afterwards, here:
#   uv run python -m seed_mini.train unbundle --bundle FILES/seedream-mini-live.safetensors \
#       --vae training/seedream-mini --to runs/gpu-live && uv run seed eval -m runs/gpu-live
#   uv run python -m seed_mini.train unbundle --bundle FILES/seedream-mini-ema.safetensors \
#       --vae training/seedream-mini --to runs/gpu-ema && uv run seed eval -m runs/gpu-ema
# ship the better one ("Shipping a new teacher" in training/seedream-mini/README.md), copy the JSONs into
# benchmarks/results/ and their numbers into benchmarks/RESULTS.md.
#
# The diffusers interop benchmark (issue 9, resolved) needs wheels the device image lacks; run it in a
# separate call when there is device time to spare: `python3 benchmarks/diffusers_interop.py --gpu --model
# flux|wan` with carry [".whl"] made by
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       diffusers==0.42.1 importlib_metadata
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

PARTS=${PARTS:-train attention quant restore}  # PARTS="train attention" runs those alone
MINUTES=${MINUTES:-3.0}                        # of training

part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    case " $PARTS bundle " in *" $name "*) ;; *) return ;; esac
    echo "=== $name: $*" >>"$OUT/log.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$OUT/log.txt" 2>&1
    echo "$name exit $? in $((SECONDS - start)) s" >>"$OUT/summary.txt"
}

part train $((40 + ${MINUTES%.*} * 60 + 20)) python3 -m seed_mini.train dit --out /tmp/dit --vae training/seedream-mini \
    --init training/seedream-mini/live --steps 10000000 --batch 512 --lr 8e-4 --warmup 200 --decay 20% \
    --minutes $MINUTES --workers 12 --word-loss 0.1 --pooled-drop 0.5 --device cuda                        # issue 4
part bundle 30 python3 -m seed_mini.train bundle --out /tmp/dit --to "$OUT"
cp /tmp/dit/log.jsonl "$OUT/dit-log.jsonl" 2>/dev/null
part attention 110 python3 benchmarks/attention.py --gpu-only --json "$OUT/attention-gpu.json"   # issue 5
part quant 100 python3 benchmarks/quant.py --gpu-only --json "$OUT/quant-gpu.json"                 # issue 7
part restore 420 python3 benchmarks/restore.py --gpu --json "$OUT/restore-gpu.json"                # issue 8
cat "$OUT/summary.txt"
