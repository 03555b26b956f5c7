#!/usr/bin/env bash
# The main job on the built-in demo world, through the same tools a nuScenes user runs:
#   set-up -> demo world (nuScenes format) -> infos -> superpixels -> pretraining (ST-SLidR and
#   relational, demo configs) -> linear probe and few-shot finetune from each pretrained
#   backbone and from random initialisation -> SegMetric on the validation scenes -> one table.
# Writes everything under work_dirs/demo (the table as results.md and results.json, pictures
# in vis/). The demo teacher is a frozen, RANDOMLY INITIALISED ResNet-18 (nothing downloaded).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
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
quiet_train() {  # show the Runner's progress lines only; the whole output goes to a log file,
  # whose end is printed when the run fails
  local log="$WORK/logs/$(basename "$1" .py)_$(date +%s%N).log"
  mkdir -p "$WORK/logs"
  local rc=0
  "$PY" tools/train.py "$@" > "$log" 2>&1 &
  local pid=$!
  tail -n +1 --pid=$pid -f "$log" | grep --line-buffered -F "Epoch(" || true
  wait $pid || rc=$?
  if [ "$rc" != 0 ]; then
    echo "tools/train.py failed (exit $rc); the end of $log:" >&2
    tail -n 40 "$log" >&2
  fi
  return $rc
}

[ -f "$DATA/v1.0-mini/scene.json" ] || stage world "$PY" tools/create_demo_world.py --out "$DATA"
stage infos "$PY" tools/create_pretrain_infos.py --root "$DATA" --version v1.0-mini --out-dir "$DATA"
stage superpixels "$PY" tools/create_superpixels.py "$DATA/nuscenes_infos_pretrain.pkl" \
  --data-root "$DATA" --out-dir "$DATA/superpixels" --workers 2
for method in stslidr relational; do
  stage "pretrain $method" quiet_train \
    configs/demo/${method}_minkunet-w16_resnet18-random_1xb2-6e_demo.py \
    --work-dir "$WORK/$method" --cfg-options "train_dataloader.dataset.data_root=$DATA/"
done
RUNS=()
for init in stslidr relational random; do
  if [ "$init" = random ]; then ckpt=(model.init_cfg=None)
  else ckpt=("model.init_cfg.checkpoint=$WORK/$init/epoch_6.pth"); fi
  for proto in probe fewshot; do
    if [ "$proto" = probe ]; then cfg=configs/demo/minkunet-w16_linear-probe_1xb2-6e_demo.py
    else cfg=configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py; fi
    stage "$proto from $init" quiet_train "$cfg" --work-dir "$WORK/${proto}_$init" \
      --cfg-options "${ckpt[@]}" "train_dataloader.dataset.data_root=$DATA/" \
      "val_dataloader.dataset.data_root=$DATA/"
    RUNS+=("$WORK/${proto}_$init"); LABELS+=("$init")
  done
done
stage pictures "$PY" tools/visualize.py --data-root "$DATA" \
  --ann-file "$DATA/nuscenes_infos_val.pkl" --checkpoint "$WORK/stslidr/epoch_6.pth" \
  --pretrain-config configs/demo/stslidr_minkunet-w16_resnet18-random_1xb2-6e_demo.py \
  --segmentor-config configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py \
  --segmentor-checkpoint "$WORK/fewshot_stslidr/epoch_30.pth" --out-dir "$WORK/vis" || \
  echo "(pictures failed; the table below is unaffected)"
echo
"$PY" tools/results_table.py "${RUNS[@]}" --labels "${LABELS[@]}" --out "$WORK/results.md" \
  --json "$WORK/results.json"
echo
for k in "${!STAGE_TIME[@]}"; do echo "  $k: ${STAGE_TIME[$k]} s"; done | sort
echo "results: $WORK/results.md, $WORK/results.json; pictures: $WORK/vis"
