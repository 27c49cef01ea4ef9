#!/usr/bin/env bash
# Installs OpenMMLab's detection stack (mmengine 0.10.7, mmcv 2.1.0 with its compiled ops, mmdet 3.3.0,
# mmdet3d 1.4.0) into a virtual environment that already holds torch: `bash tools/install_mmdet.sh [VENV]`
# (default .venv).
#
# mmdet3d 1.4.0 (pure Python; its 3-D ops are mmcv's) is installed without its declared dependencies:
# open3d, nuscenes-devkit, lyft-dataset-sdk, plyfile, trimesh, scikit-image and tensorboard serve only its
# dataset converters, visualisers and nuScenes/Lyft metrics, none of which we import; what its models
# import (numba) is installed beside it. pip's resolver then reports those as missing: expected.
#
# mmcv 2.1.0 (the newest mmcv that mmdet 3.3 accepts) ships only as source, and its setup.py asks for
# C++17 while torch 2.14's headers need C++20 (../shared/ENVIRONMENT.md), so the sdist from PyPI is
# patched and built here against the venv's torch (about 10 minutes on 2 cores). The wheel is kept in
# ~/.cache/automl/wheels (or $AUTOML_WHEEL_CACHE), keyed by Python and torch version, so a later
# install on the same machine takes seconds. Nothing but the package registry is contacted.
set -euo pipefail
VENV="${1:-.venv}"
PY="$VENV/bin/python"
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
MMENGINE_VERSION=0.10.7
MMDET3D_VERSION=1.4.0
NUMBA_VERSION=0.68.1

if "$PY" - <<PYCHECK 2>/dev/null; then
import mmcv, mmdet, mmengine, mmdet3d
from mmcv.ops import nms, RoIAlign  # the compiled ops (mmcv._ext)
import mmdet3d.models  # its models import numba and mmcv's 3-D ops
assert mmcv.__version__ == "$MMCV_VERSION" and mmdet.__version__ == "$MMDET_VERSION"
assert mmdet3d.__version__ == "$MMDET3D_VERSION"
PYCHECK
    echo "install_mmdet: mmcv $MMCV_VERSION (with ops), mmdet $MMDET_VERSION and mmdet3d $MMDET3D_VERSION are already installed in $VENV"
    exit 0
fi

"$PY" -m pip install -q 'setuptools>=77.0.3,<81' ninja wheel "mmengine==$MMENGINE_VERSION"
tag="$("$PY" -c 'import sys, torch; print("py%d%d-torch%s" % (sys.version_info[0], sys.version_info[1], torch.__version__.split("+")[0]))')"
wheels="${AUTOML_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/automl/wheels}/mmcv-$MMCV_VERSION-$tag"
if ! ls "$wheels"/mmcv-*.whl >/dev/null 2>&1; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "install_mmdet: building mmcv $MMCV_VERSION with its ops against torch ($tag); about 10 minutes on 2 cores"
    "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    grep -q -- '-std=c++17' "$src/setup.py" || { echo "install_mmdet: mmcv's setup.py no longer says -std=c++17" >&2; exit 1; }
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" "$src"
    mkdir -p "$wheels"
    cp "$work"/dist/mmcv-*.whl "$wheels/"
fi
"$PY" -m pip install -q "$wheels"/mmcv-*.whl "mmdet==$MMDET_VERSION" "numba==$NUMBA_VERSION"
log="$(mktemp)"
"$PY" -m pip install -q --no-deps "mmdet3d==$MMDET3D_VERSION" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
# pip names the dependencies left out on purpose (see the top of this file); show anything else it said
grep -v -e "requires .*, which is not installed" -e "dependency resolver does not currently" \
    -e "dependency conflicts" "$log" || true
rm -f "$log"
"$PY" -c "from mmcv.ops import RoIAlign, nms; import mmdet, mmdet3d.models; print('install_mmdet: mmdet', mmdet.__version__, 'and mmdet3d', mmdet3d.__version__, 'with mmcv ops')"
