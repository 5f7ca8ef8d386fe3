#!/usr/bin/env bash
# One command from a fresh clone to a result:
#   bash setup.sh demo     # venv + package (+ lavapipe where Linux has no Vulkan adapter) + a checked demo conv
#   bash setup.sh test     # the same set-up with test extras + the full test suite
# Extra arguments go to the demo / pytest. Environment:
#   Q8TA_VENV=dir      virtual environment to use (default .venv)
#   PYTHON=python3.x   interpreter that creates it (default python3, 3.11+)
#   Q8TA_TORCH=0       do not install torch for the cross-checks (test mode installs torch 2.13.0)
#   Q8TA_SKIP_OPENGL=1 skip the OpenGL backend tests (and, on Linux, installing Mesa's EGL/GL)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mode="${1:-demo}"
[ $# -gt 0 ] && shift
case "$mode" in demo|test) ;; *) echo "usage: bash setup.sh [demo|test] [args...]" >&2; exit 2;; esac

say() { printf '[setup] %s\n' "$*"; }
os="$(uname -s)"
case "$os" in
  Linux*) platform=linux ;;
  Darwin*) platform=macos ;;
  MINGW*|MSYS*|CYGWIN*) platform=windows ;;
  *) platform=other ;;
esac

# 1. Virtual environment and the package.
venv="${Q8TA_VENV:-.venv}"
py="${PYTHON:-python3}"
# Missing, or a stub that does not run (Windows' Store alias python3.exe): fall back to `python`.
"$py" -c '' >/dev/null 2>&1 || py=python
if [ ! -d "$venv" ]; then
  say "creating virtual environment $venv with $("$py" --version 2>&1)"
  "$py" -m venv "$venv"
fi
if [ -x "$venv/bin/python" ]; then vpy="$venv/bin/python"; else vpy="$venv/Scripts/python.exe"; fi
"$vpy" -c 'import sys; assert sys.version_info >= (3, 11), "q8ta_wgpu needs Python 3.11+"'
extras=""
[ "$mode" = test ] && extras="[test]"
say "installing q8ta_wgpu$extras (editable)"
"$vpy" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$vpy" -m pip install -q -e ".$extras"
if [ "$mode" = test ] && [ "${Q8TA_TORCH:-1}" != 0 ]; then
  if ! "$vpy" -c 'import torch' >/dev/null 2>&1; then
    say "installing torch 2.13.0 (CPU) for the PyTorch cross-checks (Q8TA_TORCH=0 skips)"
    "$vpy" -m pip install -q "torch==2.13.0" || say "torch not installed: its cross-checks will skip"
  fi
fi

# 2. A WebGPU adapter. On Linux, Vulkan first: Mesa's software Vulkan driver (lavapipe) is
# installed whenever wgpu sees no Vulkan adapter, even if an OpenGL one (llvmpipe) is there, so
# that the demo and the suite run on Vulkan, the backend the package is built for.
has_adapter() { "$vpy" -m q8ta_wgpu info >/dev/null 2>&1; }
has_vulkan() { "$vpy" -c 'import sys, q8ta_wgpu as q; sys.exit(all(a["backend"] != "Vulkan" for a in q.list_adapters()))' >/dev/null 2>&1; }
need_driver=0
if [ "$platform" = linux ]; then has_vulkan || need_driver=1; else has_adapter || need_driver=1; fi
if [ "$need_driver" = 1 ]; then
  case "$platform" in
    linux)
      sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
      if command -v apt-get >/dev/null 2>&1; then
        say "no Vulkan adapter: installing mesa-vulkan-drivers and libvulkan1 (lavapipe) with apt-get"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
      elif command -v dnf >/dev/null 2>&1; then
        say "no Vulkan adapter: run 'sudo dnf install -y mesa-vulkan-drivers vulkan-loader' and try again"; exit 3
      elif command -v pacman >/dev/null 2>&1; then
        say "no Vulkan adapter: run 'sudo pacman -S vulkan-swrast vulkan-icd-loader' and try again"; exit 3
      elif command -v apk >/dev/null 2>&1; then
        say "no Vulkan adapter: run 'sudo apk add mesa-vulkan-swrast vulkan-loader' and try again"; exit 3
      elif command -v zypper >/dev/null 2>&1; then
        say "no Vulkan adapter: run 'sudo zypper install libvulkan_lvp libvulkan1' and try again"; exit 3
      else
        say "no Vulkan adapter: install your distribution's Mesa Vulkan (lavapipe) driver and Vulkan loader"; exit 3
      fi
      has_vulkan || { say "still no Vulkan adapter after the install:"; "$vpy" -m q8ta_wgpu info; exit 3; } ;;
    macos) say "no WebGPU adapter: macOS needs no extra driver (Metal); check that this Mac supports Metal"; exit 3 ;;
    windows) say "no WebGPU adapter: update the GPU driver (D3D12/Vulkan), or install a software adapter (WARP ships with Windows)"; exit 3 ;;
    *) say "no WebGPU adapter and no known way to install one on $os"; exit 3 ;;
  esac
fi
say "adapter: $("$vpy" -c 'import q8ta_wgpu as q; i = q.info(); print(i["adapter"], "/", i["backend"])' 2>/dev/null)"

# 2b. Tests on Linux also run on wgpu's OpenGL backend (tests/test_backends.py): Mesa's llvmpipe
# through EGL. Q8TA_SKIP_OPENGL=1 opts out (runners without OpenGL: macOS, Windows).
has_gl() { "$vpy" -c 'import sys, q8ta_wgpu as q; sys.exit(all(a["backend"] != "OpenGL" for a in q.list_adapters()))' >/dev/null 2>&1; }
if [ "$mode" = test ] && [ "$platform" = linux ] && [ "${Q8TA_SKIP_OPENGL:-0}" = 0 ] && ! has_gl; then
  sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    say "no OpenGL adapter: installing libegl1 libegl-mesa0 libgl1-mesa-dri (llvmpipe over EGL) with apt-get"
    { $sudo apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null; } ||
      say "apt-get could not install them"
  else
    say "no OpenGL adapter: install Mesa's EGL and DRI drivers (dnf: mesa-libEGL mesa-dri-drivers;" \
        "pacman: mesa; apk: mesa-egl mesa-dri-gallium; zypper: Mesa-libEGL1 Mesa-dri) or set Q8TA_SKIP_OPENGL=1"
  fi
  has_gl || say "still no OpenGL adapter: tests/test_backends.py will fail (Q8TA_SKIP_OPENGL=1 skips it)"
fi

# 3. The job.
if [ "$mode" = demo ]; then
  exec "$vpy" -m q8ta_wgpu demo "$@"
else
  exec "$vpy" -m pytest -q tests "$@"
fi
