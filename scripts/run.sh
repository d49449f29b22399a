#!/usr/bin/env bash
# Set-up, build, then run the default scenario. Extra arguments go to `dwdp run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh default >/dev/null
exec ./build/default/cli/dwdp layout scenarios/default.yaml "$@"
