#!/usr/bin/env bash
# Set-up, build, then every test through CTest. DWDP_TEST_PRESET=asan runs the sanitizer build.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
preset="${DWDP_TEST_PRESET:-default}"
./scripts/build.sh "$preset"
ctest --preset "$preset" -j"$(nproc)"
