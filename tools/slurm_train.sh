#!/usr/bin/env bash
# Training through Slurm, as mmdet3d's tools/slurm_train.sh:
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# Environment: GPUS (tasks, 8), GPUS_PER_NODE (8; 0 requests no GPU, for CPU clusters),
# CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (the checkout's .venv/bin/python by default).
set -x
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
  GRES="--gres=gpu:${GPUS_PER_NODE}"; TASKS_PER_NODE="--ntasks-per-node=${GPUS_PER_NODE}"
else
  GRES=""; TASKS_PER_NODE=""
fi

PYTHONPATH="$ROOT":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES} \
    --ntasks=${GPUS} \
    ${TASKS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ROOT/tools/train.py" ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS}
