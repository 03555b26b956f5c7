#!/usr/bin/env bash
# Testing through Slurm, as mmdet3d's tools/slurm_test.sh:
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# Environment: GPUS, GPUS_PER_NODE (0 for CPU clusters), CPUS_PER_TASK, SRUN_ARGS, PYTHON.
exec bash "$(dirname "$0")/_srun.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
