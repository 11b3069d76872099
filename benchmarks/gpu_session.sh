#!/usr/bin/env bash
# Every GPU job the open issues wait for, from the repository root on the device machine. Each part has its
# own time limit, so one failure does not cost the others.
#
#   train      issue 4: seedream-mini continues from training/seedream-mini/live for $MINUTES minutes
#              (batch $BATCH, default 2048; scenes drawn and packed by $WORKERS (12) processes, pooled-vector
#              dropout 0.5, warmup then a decay over the last 20%); its EMA and live weights come back as
#              two fp16 bundles (13 MB each). Session 11 ran batch 512 at 6.3 steps/s: the step was bound
#              by the host (a step at batch 1 takes 74 ms on the 2-core CPU, 9,659 operator calls, and 14
#              copies a step waited for the GPU), so a batch 4x larger costs little more time; session 12
#              made the copies non-blocking and moved the per-object and per-word work to the workers
#              (`benchmarks/train_host.py`). The first minute's steps/s in log.txt says whether it held;
#              dit-profile.txt has 10 steps' operators by GPU and host time.
#   teacher    the live weights of that run as a model directory (/tmp/teacher)
#   distill    issue 6: both shipped students made again from /tmp/teacher (or $TEACHER), side by side
#              (tscd-4: cfg, then tscd, then tscd --tscd-points own; dmdx-1: the dmdx recipe),
#              each within $DISTILL_MINUTES (default 3.0; `seed distill --minutes` plans the steps);
#              they come back in students/ with their logs. Not yet run on a GPU (a CPU dry run of
#              the parts, with the plugins found as below, passed in session 12)
#   attention  issue 5, quant issue 7, restore issue 8: the GPU benchmarks, one JSON each
#
# PARTS="train attention" runs only those parts; MINUTES=4.0 trains longer. The parts' limits add up to
# 1,290 s at the defaults, over one call's 600 s and the session's 900 s of device time: choose. For
# issues 4 and 6, one call: PARTS="train teacher distill" MINUTES=2.5 DISTILL_MINUTES=2.5 (limits 180 + 30
# + 60 + 270 = 540 s); /tmp/dit and /tmp/teacher are lost if a later call lands on a fresh machine.
# Session 12 added BATCH (2048), the teacher and distill parts and the profile; none of it has run on a
# GPU yet. Session 11 (the first with a GPU, an H200) ran: all parts (train failed, fixed since; quant
# 27 s; restore cut off at its limit after two of three rows), then PARTS="train attention" MINUTES=4.0
# (train 255 s, 1,521 steps at 6.3 steps/s; attention 33 s), then `benchmarks/attention.py --tune` (40 s).
# The restore part's six rows (small-GPU rows under an 8 GiB cap first) are about 60 s a row.
# A call's start and transfers cost about 40-70 s of device time on top of the command.
#
# The working tree is over the device tool's 64 MiB: move packages/seed-mini/src/seed_mini/weights out of
# the checkout for the call (no part reads it) and put it back afterwards.
#
# What comes back ($OUT, up to 13 files): summary.txt (the card, each part's exit code), log.txt (all
# output),
# dit-log.jsonl (the training loss curve), dit-profile.txt (where a step's time goes), the two bundles,
# students/ (two model folders and their logs) and the three JSONs. Afterwards, here:
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
# the packages are not installed there, so their plugins (model families, distillation methods) are found
# through dist-info folders written from each pyproject.toml
python3 benchmarks/gpu_plugins.py /tmp/seed-plugins >/dev/null && export PYTHONPATH="$PYTHONPATH:/tmp/seed-plugins"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/summary.txt" 2>&1

PARTS=${PARTS:-train teacher distill attention quant restore}  # PARTS="train attention" runs those alone
MINUTES=${MINUTES:-3.0}                        # of training
BATCH=${BATCH:-2048}                           # images a step at 64 px (512 in session 11, at lr 8e-4)
LR=${LR:-1.2e-3}
DISTILL_MINUTES=${DISTILL_MINUTES:-3.0}        # each student
TEACHER=${TEACHER:-/tmp/teacher}               # PARTS=distill alone: TEACHER=training/seedream-mini/live
DEVICE=${DEVICE:-cuda}                         # DEVICE=cpu for a dry run with tiny settings
WORKERS=${WORKERS:-12}                         # processes drawing the training scenes

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
    --init training/seedream-mini/live --steps 10000000 --batch $BATCH --lr $LR --warmup 200 --decay 20% \
    --minutes $MINUTES --workers $WORKERS --word-loss 0.1 --pooled-drop 0.5 --profile 10 --device $DEVICE          # issue 4
part bundle 30 python3 -m seed_mini.train bundle --out /tmp/dit --to "$OUT"
cp /tmp/dit/log.jsonl "$OUT/dit-log.jsonl" 2>/dev/null
cp /tmp/dit/profile.txt "$OUT/dit-profile.txt" 2>/dev/null  # 10 steps' operators by GPU and host time
part teacher 60 python3 -m seed_mini.train export --live --out /tmp/dit --vae training/seedream-mini --to /tmp/teacher
# the two students side by side: a distillation step is bound by the host, and the GPU has room for both.
# Batch 32 and a time budget, so not the shipped students' settings (batch 8, 1,000 - 1,200 steps; RESULTS)
student() {  # student NAME "--recipe R | --method M [--init DIR]" STEPS MINUTES: one student's command line
    echo "python3 -m seed_cli distill -m $TEACHER $2 --student-steps $3 --steps 1000000 --batch 32" \
        "--lr 5e-5 --ratio 5 --minutes $4 --device $DEVICE --force -o /tmp/distill/$1" \
        ">/tmp/distill-$1.txt 2>&1"
}
# the shipped 4-step student is cfg, then tscd from it, then tscd from its own chain (RESULTS, sessions 13
# and 15; 240, 480 and 480 CPU steps): a fifth of the time, then two fifths each
fifth=$(awk "BEGIN {print $DISTILL_MINUTES / 5}"); two=$(awk "BEGIN {print $DISTILL_MINUTES * 2 / 5}")
part distill $((90 + ${DISTILL_MINUTES%.*} * 60 + 90)) bash -c "rm -rf /tmp/distill; \
    ( $(student cfg-4 '--method cfg' 4 $fifth) && \
      $(student tscd-4a '--method tscd --init /tmp/distill/cfg-4' 4 $two) && \
      $(student tscd-4 '--method tscd --tscd-points own --init /tmp/distill/tscd-4a' 4 $two) ) & \
    a=\$!; $(student dmdx-1 '--recipe dmdx' 1 $DISTILL_MINUTES) & b=\$!; wait \$a; ra=\$?; wait \$b; rb=\$?; \
    for f in /tmp/distill-*.txt; do echo \"--- \$f\"; tail -c 2000 \$f; done; exit \$((ra | rb))"
case " $PARTS " in *" distill "*)                # issue 6
    for name in tscd-4 dmdx-1; do
        if [ -d "/tmp/distill/$name/student" ]; then
            mkdir -p "$OUT/students/$name" && cp /tmp/distill/$name/student/* "$OUT/students/$name/"
            cp "/tmp/distill/$name/log.jsonl" "$OUT/students/$name-log.jsonl"
        fi
    done ;;
esac
part attention 110 python3 benchmarks/attention.py --gpu-only --json "$OUT/attention-gpu.json"   # issue 5
part quant 150 python3 benchmarks/quant.py --gpu-only --json "$OUT/quant-gpu.json"                 # issue 7
part restore 420 python3 benchmarks/restore.py --gpu --json "$OUT/restore-gpu.json"                # issue 8
cat "$OUT/summary.txt"
