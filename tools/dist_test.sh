#!/usr/bin/env bash
# Distributed testing, as mmdet3d's tools/dist_test.sh:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py args...]
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON (see dist_train.sh).
exec bash "$(dirname "$0")/_torchrun.sh" test.py "$3" "$1" "$2" "${@:4}"
