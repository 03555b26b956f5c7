#!/usr/bin/env bash
# Training through Slurm, as mmdet3d's tools/slurm_train.sh:
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# Environment: GPUS (tasks, 8), GPUS_PER_NODE (8; 0 requests no GPU, for CPU clusters),
# CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (the checkout's .venv/bin/python by default).
exec bash "$(dirname "$0")/_srun.sh" train.py "$1" "$2" "$3" --work-dir="$4" "${@:5}"
