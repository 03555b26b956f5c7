#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine and run tools/slurm_train.sh and
# tools/slurm_test.sh through srun with 2 tasks (CPU, gloo), then check the logs and the
# checkpoint. Needs root (it installs Debian's slurmctld, slurmd, slurm-client and munge when
# missing, and starts munged, slurmctld and slurmd, which it stops again at the end).
#
#   bash tests/slurm/run_slurm_localhost.sh CONFIG WORK_DIR
#   bash tests/slurm/run_slurm_localhost.sh --run DIR SCRIPT WORK_DIR
#
# CONFIG must train for a few iterations and have a test_dataloader/test_evaluator.
# Prints the job ids, both ranks' logs and the checkpoint; exits non-zero on any failure.
# With --run, the cluster runs `bash SCRIPT` in DIR instead (the documented Slurm commands,
# tests/test_doc_commands.py) and the script's exit status is this one's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="" RUN_SCRIPT=""
if [ "${1:-}" = --run ]; then
  RUN_DIR=$(readlink -f "$2") RUN_SCRIPT=$(readlink -f "$3")
  shift 3
  CONFIG=""
else
  CONFIG=$(readlink -f "$1")
  shift
fi
WORK=$(readlink -m "$1")
mkdir -p "$WORK/logs" "$WORK/slurm/state" "$WORK/slurm/spool"
log() { printf '[slurm-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ "$(id -u)" != 0 ]; then echo "run_slurm_localhost.sh needs root" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v srun >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# --- munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null
log "munge is up"

# --- slurm.conf for this host
HOST=$(hostname -s)
CPUS=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
export SLURM_CONF="$WORK/slurm/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=img2lidar-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

stop() {
  [ -f "$WORK/slurm/slurmd.pid" ] && kill "$(cat "$WORK/slurm/slurmd.pid")" 2>/dev/null || true
  [ -f "$WORK/slurm/slurmctld.pid" ] && kill "$(cat "$WORK/slurm/slurmctld.pid")" 2>/dev/null || true
}
trap stop EXIT
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
  [ "$state" = idle ] && break
  sleep 1
done
sinfo
[ "$state" = idle ] || { echo "the node did not become idle" >&2; cat "$WORK/slurm/slurmd.log" >&2; exit 1; }
log "cluster is up (node $HOST, $CPUS CPUs)"

# --- train with 2 tasks, then test the checkpoint with 2 tasks
# a free port unless one is given (a fixed one collides with runs side by side)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [ -n "$RUN_SCRIPT" ]; then
  # the documented commands set GPUS and GPUS_PER_NODE themselves; this node has few CPUs
  export CPUS_PER_TASK=1 MASTER_PORT=${MASTER_PORT:-$(free_port)} OMP_NUM_THREADS=1
  log "running $RUN_SCRIPT in $RUN_DIR"
  status=0
  (cd "$RUN_DIR" && bash -euo pipefail "$RUN_SCRIPT") || status=$?
  log "$RUN_SCRIPT exited with $status"
  exit $status
fi
export GPUS=2 GPUS_PER_NODE=0 CPUS_PER_TASK=1 MASTER_PORT=${MASTER_PORT:-$(free_port)} OMP_NUM_THREADS=1
SRUN_ARGS="--output=$WORK/logs/train-%j-%t.log" \
  bash "$ROOT/tools/slurm_train.sh" debug img2lidar-train "$CONFIG" "$WORK/train"
CKPT=$(ls "$WORK"/train/iter_*.pth | sort -V | tail -n1)
SRUN_ARGS="--output=$WORK/logs/test-%j-%t.log" \
  bash "$ROOT/tools/slurm_test.sh" debug img2lidar-test "$CONFIG" "$CKPT" --work-dir "$WORK/test"

# --- checks
fail=0
for stage in train test; do
  for rank in 0 1; do
    f=$(ls "$WORK"/logs/$stage-*-$rank.log 2>/dev/null | head -n1 || true)
    if [ -z "$f" ]; then echo "missing $stage log of rank $rank" >&2; fail=1; continue; fi
    job=$(basename "$f" | cut -d- -f2)
    echo "== $stage job $job, rank $rank: $f"
    grep "process rank" "$f" || { echo "rank $rank of the $stage job did not start" >&2; fail=1; }
    grep -q "process rank $rank of 2 (gloo)\|process rank $rank of 2 (nccl)" "$f" || fail=1
    grep "Iter(" "$f" | tail -n 3 || true
  done
done
grep -q "Iter(train) \[" "$WORK"/logs/train-*-0.log || { echo "no training iteration logged" >&2; fail=1; }
grep -q "structural_gap/gap_intra" "$WORK"/logs/test-*-0.log || { echo "no test metric logged" >&2; fail=1; }
grep -q "Distributed training: True" "$WORK"/logs/train-*-0.log || { echo "not a distributed run" >&2; fail=1; }
echo "checkpoint: $CKPT ($(du -h "$CKPT" | cut -f1))"
[ "$fail" = 0 ] && log "slurm train and test passed"
exit $fail
