#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: runs tools/SCRIPT as GPUS Slurm tasks with
# --launcher slurm.
#   bash tools/_srun.sh SCRIPT PARTITION JOB_NAME [SCRIPT args...]
# Environment: GPUS (tasks, 8), GPUS_PER_NODE (8; 0 requests no GPU, for CPU clusters),
# CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (the checkout's .venv/bin/python by default).
set -x
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
  GRES="--gres=gpu:${GPUS_PER_NODE}"; TASKS_PER_NODE="--ntasks-per-node=${GPUS_PER_NODE}"
else
  GRES=""; TASKS_PER_NODE=""
fi
PYTHONPATH="$ROOT":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks="${GPUS}" \
    ${TASKS_PER_NODE} \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/tools/$SCRIPT" "${@:4}" --launcher=slurm
