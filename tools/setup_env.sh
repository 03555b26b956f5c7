#!/usr/bin/env bash
# One set-up path for everything (README commands, .ci/run, developers).
#
# Creates an isolated virtual environment in the checkout (.venv) with the pinned stack of
# docs/dependencies.md:
#   torch 2.13.0 (local CPU wheel; on a CUDA machine the torch already installed is reused),
#   mmcv 2.1.0 with ops (compiled once, ~9 min on 2 cores; the wheel is cached outside the
#   checkout in $IMG2LIDAR_CACHE and reused), mmengine 0.10.7, mmdet 3.3.0, mmdet3d 1.4.0,
#   spconv (2.3.8 on CPU; on CUDA spconv-cu120 2.3.6 where it has a wheel for this Python, else
#   spconv-cu126 2.3.8; never two builds: projects/img2lidar/spconv_build.py), nuscenes-devkit 1.2.0.
# A constraints file pins torch so that no later step can resolve another torch build, and
# torchvision is never installed.
# A second run with everything in place only checks the stamp and exits (seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IMG2LIDAR_VENV:-$ROOT/.venv}"
CACHE="${IMG2LIDAR_CACHE:-$HOME/.cache/img2lidar}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION=2.13.0
MMCV_VERSION=2.1.0
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$(date +%s)

# --- CUDA detection: a CUDA machine keeps its own torch (venv sees system site-packages).
HAS_CUDA=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  if "$PYTHON" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    HAS_CUDA=1
  fi
fi

STAMP="$VENV/.img2lidar-setup-stamp"
STAMP_KEY="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/requirements/runtime.txt" "$ROOT/requirements/tests.txt" "$ROOT/setup.py" "$ROOT/projects/img2lidar/spconv_build.py" | sha256sum | cut -c1-16)-cuda$HAS_CUDA"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ] \
   && "$VENV/bin/python" -c 'import torch, mmcv.ops, mmdet3d, spconv, nuscenes' 2>/dev/null; then
  log "environment $VENV is up to date ($(( $(date +%s) - t0 )) s)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  if [ "$HAS_CUDA" = 1 ]; then "$PYTHON" -m venv --system-site-packages "$VENV"; else "$PYTHON" -m venv "$VENV"; fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip 'setuptools<81' wheel ninja 'numpy<2'

if [ "$HAS_CUDA" = 1 ]; then
  TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
  log "CUDA machine: reusing the installed torch $TORCH_VERSION"
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION (local CPU wheel)"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
  fi
fi
# Every later pip call is constrained: torch stays exactly as installed, numpy < 2 (nuscenes-devkit).
CONSTRAINTS="$VENV/img2lidar-constraints.txt"
"$PY" - > "$CONSTRAINTS" <<PYEOF
import torch
print(f"torch=={torch.__version__}")
print("numpy<2")
PYEOF
export PIP_CONSTRAINT="$CONSTRAINTS"

# --- mmcv 2.1.0 with ops: build once, cache the wheel outside the checkout.
TORCH_FULL="$("$PY" -c 'import torch; print(torch.__version__)')"
PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_FULL-$PYTAG"
if ! "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)" 2>/dev/null; then
  if ! ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with CPU ops (about 9 minutes on 2 cores; cached in $WHEEL_DIR)"
    mkdir -p "$WHEEL_DIR"
    # build-time requirements of mmcv's setup.py (no build isolation: it must see our torch)
    "${PIP[@]}" install -q addict packaging 'numpy<2' pyyaml yapf 'mmengine==0.10.7'
    tmp="$(mktemp -d)"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CFLAGS="-g0" CXXFLAGS="-g0" \
      "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$tmp" "mmcv==$MMCV_VERSION"
    mv "$tmp"/mmcv-*.whl "$WHEEL_DIR"/
    rm -rf "$tmp"
  else
    log "reusing cached mmcv wheel from $WHEEL_DIR"
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl
fi

log "installing the pinned OpenMMLab stack"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt"
# spconv: the build that has a wheel for this machine (projects/img2lidar/spconv_build.py holds
# the pins), and never two builds at once (they provide the same module)
SPCONV_PICK=("$PY" "$ROOT/projects/img2lidar/spconv_build.py" --cuda "$HAS_CUDA")
SPCONV="$("${SPCONV_PICK[@]}")"
for other in $("${SPCONV_PICK[@]}" --others); do
  "${PIP[@]}" uninstall -y -q "$other" >/dev/null 2>&1 || true
done
log "installing $SPCONV"
"${PIP[@]}" install -q "$SPCONV"
# mmdet3d without its declared deps (they would pull open3d, ~900 MB); its runtime needs are in
# requirements/runtime.txt.
"${PIP[@]}" install -q --no-deps 'mmdet3d==1.4.0'
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

# torchvision must never be present (its only builds are CUDA ones and break mmengine's Runner).
if "$PY" -c 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("torchvision") else 1)'; then
  echo "torchvision is installed in $VENV; remove it (pip uninstall torchvision)" >&2; exit 1
fi
"$PY" -c 'import torch, mmcv, mmcv.ops, mmengine, mmdet, mmdet3d, spconv, nuscenes' 2>/dev/null || true
"$PY" - <<'PYEOF'
import importlib.metadata as md
import torch
names = ["torch", "mmcv", "mmengine", "mmdet", "mmdet3d", "spconv", "spconv-cu120", "spconv-cu126",
         "nuscenes-devkit", "transformers", "numpy"]
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
