#!/usr/bin/env bash
# Debian/Ubuntu packages equimanip's Python dependencies need at install or run time:
#   gfortran      escnn's py3nj compiles Fortran when it is installed
#   libusb-1.0-0  open3d's shared library links against it
#   libgomp1      open3d's OpenMP runtime
# Installs only what is missing; safe to run again.
set -euo pipefail
needed=(gfortran libusb-1.0-0 libgomp1)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "equimanip needs these system packages (install them with your package manager): ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "equimanip needs: ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
