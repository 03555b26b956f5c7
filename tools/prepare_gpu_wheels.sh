#!/usr/bin/env bash
# Prepare, here (with the package registries), the wheel folder that a CUDA machine WITHOUT a
# registry needs for tools/setup_env.sh: the folder tools/gpu_check.sh installs from.
#
#   bash tools/prepare_gpu_wheels.sh [OUT_DIR]        # default gpu_wheels/offline (git-ignored)
#
# The folder holds parts, OUT_DIR/part1, part2, ..., each at most GPU_WHEELS_PART_MIB (default
# 48) MiB, because a device call carries at most 64 MiB with the working tree: carry one part per
# call (the machine keeps what earlier calls carried while it stays warm); every part has the
# MANIFEST of all of them, which tools/gpu_check.sh checks. setup_env.sh reads every part
# (IMG2LIDAR_WHEELS=OUT_DIR).
#
# What goes in is decided by projects/img2lidar/setup_plan.py (`setup_plan.py offline`): the
# pinned OpenMMLab stack, nuscenes-devkit and lyft-dataset-sdk (installed there with --no-deps),
# spconv's CUDA 12.6 build with cumm, the import-time needs of all of these, pytest, the build
# tools, and the mmcv sdist (built there by setup_env.sh with the plan's flags). Dependencies are
# followed through the wheels' own metadata (markers evaluated for the target), except for what
# the target machine already has (OFFLINE_TARGET_HAS). Pure-Python wheels are preferred; the
# others are CPython 3.12 manylinux x86_64 builds.
#
# Every wheel over 1 MB is repacked with LZMA (preset 9, extreme): the same files, hashes and
# RECORD, only compressed better (spconv-cu126 2.3.8: 70.5 MB as published, about 21 MB
# repacked; cumm-cu126 26.6 -> 18.7 MB). pip installs such wheels (its zipfile reads LZMA
# members; the target's Python needs the lzma module). Each repacked wheel is checked: every
# member reads back with its CRC, and installing it with pip gives the files its RECORD lists,
# hash for hash.
#
# Last, pip's resolver installs (--dry-run) the plan's offline phases for the target from the
# folder alone, with empty stand-in wheels for what the target already has.
#
# Idempotent: downloads and repacks already in place are kept (a second run takes seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/gpu_wheels/offline}"
DOWNLOAD="$ROOT/gpu_wheels/download"
REPACKED="$ROOT/gpu_wheels/repacked"
PY="${IMG2LIDAR_VENV:-$ROOT/.venv}/bin/python"  # needs packaging, and torch for the mmcv sdist
PART_MIB="${GPU_WHEELS_PART_MIB:-48}"
log() { printf '[wheels %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
[ -x "$PY" ] || { echo "run tools/setup_env.sh first ($PY is missing)" >&2; exit 1; }
mkdir -p "$OUT" "$DOWNLOAD" "$REPACKED"

"$PY" "$ROOT/projects/img2lidar/setup_plan.py" offline > "$DOWNLOAD/seeds.json"
log "fetching wheels for CPython $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"])' "$DOWNLOAD/seeds.json") (manylinux x86_64) into $DOWNLOAD"
"$PY" - "$DOWNLOAD" <<'PYEOF'
"""Download the seeds and the closure of their dependencies (one pip download per requirement,
pure wheel first), skipping what the target has; write the list of wheels to carry."""
import json
import os
import subprocess
import sys
import zipfile
from email.parser import Parser

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

download = sys.argv[1]
seeds = json.load(open(os.path.join(download, 'seeds.json')))
has = {canonicalize_name(n) for n in seeds['has']}
major, minor = seeds['python'].split('.')
env = dict(default_environment(), python_version=seeds['python'],
           python_full_version=seeds['python'] + '.3', implementation_name='cpython',
           platform_python_implementation='CPython', sys_platform='linux',
           platform_system='Linux', platform_machine='x86_64', os_name='posix')
pip = [sys.executable, '-m', 'pip', 'download', '--disable-pip-version-check', '-q',
       '--no-deps', '--only-binary=:all:', '--python-version', seeds['python'], '-d', download]
pure = pip + ['--platform', 'any', '--implementation', 'py', '--abi', 'none']
binary = pip + ['--implementation', 'cp', '--abi', f'cp{major}{minor}', '--abi', 'abi3',
                '--abi', 'none'] + [a for p in seeds['platforms'] for a in ('--platform', p)]


def wheels():
    return {canonicalize_name(parse_wheel_filename(f)[0]): f for f in os.listdir(download)
            if f.endswith('.whl')}


def fetch(requirement: str) -> str:
    """The wheel file of ``requirement`` in the download folder (downloaded when missing)."""
    name = canonicalize_name(Requirement(requirement).name)
    have = wheels()
    if name in have and Requirement(requirement).specifier.contains(
            str(parse_wheel_filename(have[name])[1]), prereleases=True):
        return have[name]
    if subprocess.run(pure + [requirement], capture_output=True).returncode != 0:
        subprocess.run(binary + [requirement], check=True)
    return wheels()[name]


def requirements_of(wheel: str):
    with zipfile.ZipFile(os.path.join(download, wheel)) as z:
        meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        message = Parser().parsestr(z.read(meta).decode())
    for line in message.get_all('Requires-Dist') or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(dict(env, extra='')):
            yield req


carry, queue, seen = [], [(r, True) for r in seeds['deps']], set()
queue += [(r, False) for r in seeds['no_deps']]
while queue:
    requirement, follow = queue.pop(0)
    name = canonicalize_name(Requirement(requirement).name)
    if name in seen or (name in has and follow):
        continue
    seen.add(name)
    carry.append(fetch(requirement))
    if follow:
        queue += [(str(r), True) for r in requirements_of(carry[-1])
                  if canonicalize_name(r.name) not in has]
with open(os.path.join(download, 'carry.txt'), 'w') as f:
    f.write('\n'.join(sorted(carry)) + '\n')
print(f'[wheels] {len(carry)} wheels to carry (the target already has: '
      f'{", ".join(sorted(has))})')
PYEOF

# the mmcv sdist: built on the target by setup_env.sh (no wheel matches its torch)
MMCV_REQ="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["mmcv"])' "$DOWNLOAD/seeds.json")"
if ! ls "$DOWNLOAD"/mmcv-*.tar.gz >/dev/null 2>&1; then
  log "fetching the $MMCV_REQ sdist"
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
    --no-build-isolation -d "$DOWNLOAD" "$MMCV_REQ"
fi

log "repacking wheels over 1 MB with LZMA into $REPACKED (the spconv wheel takes a few minutes)"
"$PY" - "$DOWNLOAD" "$REPACKED" <<'PYEOF'
"""Copy the wheels to carry into REPACKED, the large ones repacked with LZMA, and check them."""
import base64
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

download, out = sys.argv[1:3]
carry = open(os.path.join(download, 'carry.txt')).read().split()
carry += [f for f in os.listdir(download) if f.endswith('.tar.gz')]


class StrongLZMACompressor(zipfile.LZMACompressor):
    """zipfile's LZMA member compressor at preset 9 | extreme with a 128 MiB dictionary (the
    properties travel in the member header, so any zipfile reader decompresses it)."""

    def _init(self):
        props = lzma._encode_filter_properties({'id': lzma.FILTER_LZMA1, 'dict_size': 1 << 27,
                                                'preset': 9 | lzma.PRESET_EXTREME})
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[
            lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)])
        return struct.pack('<BBH', 9, 4, len(props)) + props


def repack(src: str, dst: str) -> None:
    zipfile.LZMACompressor = StrongLZMACompressor
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_LZMA) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info.filename), compress_type=zipfile.ZIP_LZMA)


def check_members(src: str, dst: str) -> None:
    """Every member reads back (CRC checked) with the original's bytes."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:
        assert a.namelist() == b.namelist(), dst
        for name in a.namelist():
            assert a.getinfo(name).CRC == b.getinfo(name).CRC, name
        assert b.testzip() is None, dst


def check_install(wheel: str) -> None:
    """pip installs the repacked wheel, and the files equal its RECORD's hashes (files of
    ``*.data/`` go to other install schemes and scripts are rewritten: not compared)."""
    with tempfile.TemporaryDirectory() as target:
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index',
                        '--disable-pip-version-check', '--no-compile', '--target', target,
                        '--python-version', '3.12', '--only-binary=:all:', '--platform',
                        'manylinux_2_28_x86_64', '--platform', 'manylinux_2_17_x86_64',
                        '--platform', 'manylinux2014_x86_64', '--platform', 'any', wheel],
                       check=True)
        with zipfile.ZipFile(wheel) as z:
            record = next(n for n in z.namelist()  # the wheel's own, not a vendored one
                          if n.endswith('.dist-info/RECORD') and n.count('/') == 1)
            rows = [r.split(',') for r in z.read(record).decode().splitlines() if r]
        checked = 0
        for path, digest, _ in rows:
            if not digest or '.data/' in path:
                continue
            algo, want = digest.split('=', 1)
            with open(os.path.join(target, path), 'rb') as f:
                got = base64.urlsafe_b64encode(hashlib.new(algo, f.read()).digest()).rstrip(b'=')
            assert got.decode() == want, path
            checked += 1
        print(f'[wheels] {os.path.basename(wheel)}: installs; {checked} files equal its RECORD')


for name in os.listdir(out):  # what the plan no longer carries, and unfinished repacks
    if name not in carry:
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
for name in sorted(carry):
    src, dst = os.path.join(download, name), os.path.join(out, name)
    if os.path.exists(dst):
        continue
    if name.endswith('.whl') and os.path.getsize(src) > 1 << 20:
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # checked before it takes its place
            part = os.path.join(tmp, name)
            repack(src, part)
            check_members(src, part)
            check_install(part)
            os.replace(part, dst)
        print(f'[wheels] {name}: {os.path.getsize(src) / 2**20:.1f} -> '
              f'{os.path.getsize(dst) / 2**20:.1f} MiB')
    else:
        shutil.copy2(src, dst)
PYEOF

log "splitting into parts of at most $PART_MIB MiB under $OUT"
"$PY" - "$DOWNLOAD" "$REPACKED" "$OUT" "$PART_MIB" <<'PYEOF'
"""First-fit decreasing into parts; every part gets the MANIFEST of all parts."""
import os
import shutil
import sys

download, repacked, out, part_mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
carry = open(os.path.join(download, 'carry.txt')).read().split()
carry += [f for f in os.listdir(download) if f.endswith('.tar.gz')]
sizes = {f: os.path.getsize(os.path.join(repacked, f)) for f in carry}
limit = part_mib << 20
parts = []
for f in sorted(carry, key=lambda f: (-sizes[f], f)):
    if sizes[f] > limit:
        sys.exit(f'{f} alone is over {part_mib} MiB')
    part = next((p for p in parts if sum(sizes[g] for g in p) + sizes[f] <= limit), None)
    if part is None:
        parts.append(part := [])
    part.append(f)
shutil.rmtree(out, ignore_errors=True)
manifest = ''.join(f'part{i + 1} {f}\n' for i, p in enumerate(parts) for f in sorted(p))
for i, part in enumerate(parts):
    folder = os.path.join(out, f'part{i + 1}')
    os.makedirs(folder)
    for f in part:
        os.link(os.path.join(repacked, f), os.path.join(folder, f))
    with open(os.path.join(folder, 'MANIFEST'), 'w') as fh:
        fh.write(manifest)
    print(f'[wheels] part{i + 1}: {len(part)} files, {sum(sizes[f] for f in part) / 2**20:.1f} MiB')
PYEOF

log "checking that pip resolves the offline install from $OUT alone (with stand-ins for what the target has)"
"$PY" - "$DOWNLOAD/seeds.json" "$OUT" <<'PYEOF'
"""pip's resolver, for CPython 3.12 manylinux, installs the plan's offline phases from the
folder plus empty stand-in wheels of the packages the target machine has: nothing is missing."""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

seeds, out = json.load(open(sys.argv[1])), sys.argv[2]
parts = [os.path.join(out, p) for p in sorted(os.listdir(out))]
#: versions of the stand-ins (what such a machine plausibly has; only version bounds matter)
versions = {'numpy': '2.5.2', 'torch': '2.11.0', 'pillow': '11.3.0', 'scipy': '1.16.0',
            'packaging': '25.0', 'pyyaml': '6.0.2', 'python-dateutil': '2.9.0', 'six': '1.17.0',
            'tqdm': '4.67.1', 'transformers': '4.57.0', 'networkx': '3.5', 'sympy': '1.14.0',
            'typing-extensions': '4.14.0', 'pandas': '2.3.1', 'scikit-image': '0.25.2',
            'numba': '0.61.2', 'opencv-python-headless': '4.12.0.88'}
with tempfile.TemporaryDirectory() as stubs, tempfile.TemporaryDirectory() as target:
    for name in seeds['has']:
        dist = name.replace('-', '_')
        version = versions.get(name, '99.0')
        with zipfile.ZipFile(os.path.join(stubs, f'{dist}-{version}-py3-none-any.whl'), 'w') as z:
            info = f'{dist}-{version}.dist-info'
            z.writestr(f'{info}/METADATA', f'Metadata-Version: 2.1\nName: {name}\n'
                                           f'Version: {version}\n')
            z.writestr(f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: stub\n'
                                        'Root-Is-Purelib: true\nTag: py3-none-any\n')
            z.writestr(f'{info}/RECORD', '')
    pip = [sys.executable, '-m', 'pip', 'install', '--dry-run', '-q', '--ignore-installed',
           '--disable-pip-version-check', '--no-index', '--find-links', stubs, '--python-version', seeds['python'], '--implementation', 'cp',
           '--only-binary=:all:', '--target', target]
    pip += [a for p in seeds['platforms'] for a in ('--platform', p)]
    pip += [a for p in parts for a in ('--find-links', p)]
    subprocess.run(pip + ['--platform', 'any', '--no-deps'] + seeds['no_deps'], check=True)
    subprocess.run(pip + seeds['deps'], check=True)
print('[wheels] the offline install resolves')
PYEOF

log "$(cat "$OUT"/part1/MANIFEST | wc -l) files in $(ls "$OUT" | wc -l) parts under $OUT (carry one part per device call):"
for part in "$OUT"/part*; do
  printf '  %s: %s MiB\n' "$(basename "$part")" "$(du -sbL "$part" | awk '{printf "%.1f", $1/1048576}')"
done
ls -S -l "$REPACKED" | awk 'NR>1 {printf "  %8.1f MiB  %s\n", $5/1048576, $9}' | head -12
