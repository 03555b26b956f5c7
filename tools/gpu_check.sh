#!/usr/bin/env bash
# The GPU check, for any CUDA machine, in one call of at most 10 minutes; no registry needed.
#
#   bash tools/prepare_gpu_wheels.sh    # first, where a registry is reachable: gpu_wheels/offline
#   bash tools/gpu_check.sh --check-wheels   # on the CUDA machine: which wheel parts are there
#   bash tools/gpu_check.sh             # then, on the CUDA machine (all parts beside it)
#   bash tools/gpu_check.sh --dry-run   # here, without a GPU: every phase on the CPU, small sizes
#
# The wheel folder comes in parts of at most 48 MiB (gpu_wheels/offline/part1, part2, ...), one
# carried per device call: the machine keeps what an earlier call carried while it stays warm.
# So: call 1 carries part1 and runs `bash tools/gpu_check.sh --check-wheels` (seconds); the last
# call carries the last part and runs `bash tools/gpu_check.sh`. A missing part stops the check
# before anything is installed, naming it.
#
# Phases (each logged to $OUT/<phase>.log, the whole run to $OUT/gpu_check.log; a summary with
# the status and time of each phase in $OUT/summary.md):
#   setup      tools/setup_env.sh from the wheel folder only (IMG2LIDAR_WHEELS; no registry):
#              installs what the machine lacks and builds mmcv from its sdist with the plan's
#              flags. IMG2LIDAR_MMCV_BUILD defaults to cpu here: a CPU-ops build takes about a
#              minute on 16 cores, a CUDA one (the plan's choice where nvcc matches torch) too
#              long for one call; it also exercises the routing of mmcv's kernels to the project's
#              torch kernels on CUDA. IMG2LIDAR_MMCV_BUILD=auto follows the plan.
#   tests      tests/test_cuda.py (spconv's CUDA kernels, the students and the routed dynamic
#              scatter on CUDA against the CPU path)
#   step       tools/gpu_step_check.py step: a full distiller training step on CUDA against the
#              CPU path (features, pooled k/q/e, every loss, gradients of student and head) in
#              float32 and with --amp, and the step's host syncs
#   train      50 iterations of tools/train.py on the real nuScenes sample (ST-SLidR + CB,
#              MinkUNet-34, random-weight ResNet-50 teacher, 224x416 crops, batch 8, --amp):
#              losses finite and falling
#   benchmark  tools/benchmark.py pretraining at batch 8 and 16 with --amp (3 measured steps per
#              pass, to fit the call): docs/gpu_benchmark.md (copied to $OUT)
# Phases get what is left of GPU_CHECK_BUDGET seconds (default 570); one that would not fit is
# skipped and says so. GPU_CHECK_PHASES="tests step" runs a subset. Exit 1 when a phase fails.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY=0
MODE="${1:-}"
[ "$MODE" = --dry-run ] && DRY=1
WHEELS="${IMG2LIDAR_WHEELS:-$ROOT/gpu_wheels/offline}"
# check_wheels: every file of the parts' MANIFEST is present; prints what is missing
check_wheels() {
  local manifest missing=0
  manifest="$(ls "$WHEELS"/part*/MANIFEST 2>/dev/null | head -1)"
  if [ -z "$manifest" ]; then
    echo "no wheel part under $WHEELS (make them with tools/prepare_gpu_wheels.sh and carry them)"
    return 1
  fi
  while read -r part file; do
    if [ ! -f "$WHEELS/$part/$file" ]; then
      echo "missing: $part/$file"; missing=1
    fi
  done < "$manifest"
  echo "wheel parts under $WHEELS: $(ls -d "$WHEELS"/part* | xargs -n1 basename | tr '\n' ' ')($(du -shL "$WHEELS" | cut -f1)); $([ $missing = 0 ] && echo complete || echo 'INCOMPLETE: carry the missing parts in earlier calls')"
  return $missing
}
if [ "$MODE" = --check-wheels ]; then
  check_wheels; python3 -c 'import lzma' && echo "lzma ok"; exit 0
fi
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUDGET="${GPU_CHECK_BUDGET:-570}"
PHASES="${GPU_CHECK_PHASES:-setup tests step train benchmark}"
PY="${IMG2LIDAR_VENV:-$ROOT/.venv}/bin/python"
START=$(date +%s)
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
log() { printf '[gpu_check %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*"; }
SUMMARY=()
FAILED=0

# run_phase NAME MIN_SECONDS MAX_SECONDS COMMAND...: run within the budget, log, record
run_phase() {
  local name="$1" need="$2" cap="$3"; shift 3
  case " $PHASES " in *" $name "*) ;; *) return 0 ;; esac
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt "$need" ]; then
    log "phase $name skipped: ${left}s left, it needs about ${need}s"
    SUMMARY+=("| $name | skipped (out of time) | - |"); FAILED=1; return 0
  fi
  local limit=$(( left < cap ? left : cap )) t0 rc
  t0=$(date +%s)
  log "phase $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ]; then
    SUMMARY+=("| $name | ok | $took |")
  else
    [ "$rc" = 124 ] && log "phase $name ran out of time"
    SUMMARY+=("| $name | FAILED (exit $rc) | $took |"); FAILED=1
  fi
  log "phase $name: exit $rc after ${took}s"
}

log "GPU check of $(git rev-parse --short HEAD 2>/dev/null || echo '?') (dry run: $DRY) -> $OUT"
nvidia-smi 2>&1 | head -15 || log "nvidia-smi: not available"
python3 -c 'import lzma, sys; print("python", sys.version.split()[0], "lzma ok")' \
  || log "this Python has no lzma module: the repacked wheels cannot be installed"

if [ "$DRY" = 1 ]; then
  # the same phases on the CPU with small sizes, in the existing venv (registry set-up)
  run_phase setup 10 300 bash tools/setup_env.sh
  run_phase tests 10 300 env OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider -rs \
    tests/test_cuda.py tests/test_setup_plan.py -k 'cuda or routed or routing'
  run_phase step 10 900 "$PY" tools/gpu_step_check.py step --device cpu --small --out "$OUT/step"
  run_phase train 10 900 bash -c "'$PY' tools/gpu_step_check.py train-config --small \
      --work-dir '$OUT/train' --out '$OUT/train/config.py' --iters 4 --batch 1 --workers 1 \
    && '$PY' tools/train.py '$OUT/train/config.py' --work-dir '$OUT/train' --auto-scale-lr \
    && '$PY' tools/gpu_step_check.py check-log '$OUT/train' --iters 4 --window 2"
  run_phase benchmark 10 900 "$PY" tools/benchmark.py pretraining --device cpu --small \
    --batch-sizes 1 --iters 1 --warmup 1 --workers 1 --out "$OUT/gpu_benchmark.md"
else
  if ! check_wheels; then
    log "the wheel folder is incomplete: nothing installed"; exit 1
  fi
  log "what the plan would build for mmcv here: $(python3 projects/img2lidar/setup_plan.py shell \
      --python python3 --wheels "$WHEELS" 2>&1 | grep -E '^PLAN_(MACHINE|MMCV_REASON)=' | tr '\n' ' ')"
  run_phase setup 60 330 env IMG2LIDAR_WHEELS="$WHEELS" IMG2LIDAR_NO_TEACHER_WEIGHTS=1 \
    IMG2LIDAR_MMCV_BUILD="${IMG2LIDAR_MMCV_BUILD:-cpu}" bash tools/setup_env.sh
  run_phase tests 30 120 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
  run_phase step 30 150 "$PY" tools/gpu_step_check.py step --out "$OUT/step"
  run_phase train 60 200 bash -c "'$PY' tools/gpu_step_check.py train-config \
      --work-dir '$OUT/train' --out '$OUT/train/config.py' --iters 50 --batch 8 \
    && '$PY' tools/train.py '$OUT/train/config.py' --work-dir '$OUT/train' --amp --auto-scale-lr \
    && '$PY' tools/gpu_step_check.py check-log '$OUT/train' --iters 50"
  run_phase benchmark 60 200 bash -c "'$PY' tools/benchmark.py pretraining --device cuda \
      --batch-sizes 8 16 --amp --iters 3 --warmup 1 --out docs/gpu_benchmark.md \
    && cp docs/gpu_benchmark.md '$OUT/'"
fi

rm -rf "$OUT/train/data"  # links and superpixels of the sample: not worth carrying back
find "$OUT/train" -name '*.pth' -delete 2>/dev/null || true  # checkpoints: too big to return
{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ), dry run: $DRY)"
  echo
  echo "| phase | status | seconds |"
  echo "|---|---|---:|"
  printf '%s\n' "${SUMMARY[@]}"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
log "done in $(( $(date +%s) - START ))s"
exit "$FAILED"
