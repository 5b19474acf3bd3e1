#!/usr/bin/env bash
# Installs what HASTE needs to build, run and test: Debian packages (compilers, libraries) and a
# few PyPI packages (a recent CMake, numpy/scipy/napkinxc/pytest for the cross-checks, nanobind
# for the Python module, torch for the haste.torch tests).
# Idempotent and quick when everything is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

deb_packages=(
  build-essential ninja-build pkg-config xz-utils
  libcli11-dev libfmt-dev nlohmann-json3-dev libtomlplusplus-dev libfast-float-dev
  liblzma-dev zlib1g-dev libbz2-dev libxxhash-dev
  libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev libcairo2-dev
  python3 python3-pip
)
# PyPI's torch wheel is built for CUDA and loads only with its nvidia-* wheels beside it (about
# 5 GB installed, under two minutes here); it runs on CPU-only machines all the same.
pip_packages=("cmake>=3.28" numpy scipy napkinxc pytest safetensors nanobind torch)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for package in "${deb_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Run from / so that the repo's cmake/ folder is not mistaken for the cmake Python package.
python_has_all() {
  (cd / && python3 - <<'PY' 2>/dev/null
import importlib, sys
import cmake  # the PyPI cmake wheel
for name in ("numpy", "scipy", "napkinxc", "pytest", "safetensors", "nanobind", "torch"):
    importlib.import_module(name)
major, minor = (int(x) for x in cmake.__version__.split(".")[:2])
sys.exit(0 if (major, minor) >= (3, 28) else 1)
PY
  )
}
if ! python_has_all; then
  echo "setup: installing Python packages: ${pip_packages[*]}"
  # Debian's own python3 refuses system-wide pip installs unless told; a venv/pyenv python does not.
  python3 -m pip install -q "${pip_packages[@]}" ||
    python3 -m pip install -q --break-system-packages "${pip_packages[@]}"
fi
python_has_all || { echo "setup: Python packages still missing after install" >&2; exit 1; }
echo "setup: all dependencies present"
