#!/usr/bin/env bash
# Distributed training on one or several nodes, as mmdet3d's tools/dist_train.sh:
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON
# (defaults to the checkout's .venv/bin/python). Without CUDA the processes use gloo on CPU.
exec bash "$(dirname "$0")/_torchrun.sh" train.py "$2" "$1" "${@:3}"
