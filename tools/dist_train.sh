#!/usr/bin/env bash
# Distributed training on one or several nodes, as mmdet3d's tools/dist_train.sh:
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON
# (defaults to the checkout's .venv/bin/python). Without CUDA the processes use gloo on CPU.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$ROOT/tools/train.py" \
    $CONFIG \
    --launcher pytorch ${@:3}
