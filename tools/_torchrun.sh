#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: runs tools/SCRIPT in NPROC processes per node with
# torch.distributed.run and --launcher pytorch.
#   bash tools/_torchrun.sh SCRIPT NPROC [SCRIPT args...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON
# (defaults to the checkout's .venv/bin/python). Without CUDA the processes use gloo on CPU.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRIPT=$1
NPROC=$2
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$ROOT/tools/$SCRIPT" "${@:3}" --launcher pytorch
