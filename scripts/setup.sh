#!/usr/bin/env bash
# Installs the Debian packages dwdp needs, only those that are missing. Idempotent and quiet
# when everything is already there.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config clang-format git
  libabsl-dev libyaml-cpp-dev libboost-test-dev libcli11-dev nlohmann-json3-dev
  libbenchmark-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-dev
  python3 python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
