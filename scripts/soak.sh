#!/usr/bin/env bash
# Long simulator runs: memory must stay flat and every steady-state forward must give the same
# numbers as the first steady-state one. Prints forwards, wall time, peak RSS and the spread of
# forward times.
#
#   ./scripts/soak.sh [FUNCTIONAL_FORWARDS] [TIMING_FORWARDS]     (default 1000 and 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
functional="${1:-1000}"
timing="${2:-100000}"
dwdp=./build/default/cli/dwdp
[ -x "$dwdp" ] || ./scripts/build.sh default >/dev/null
soak() {  # soak LABEL ARGS...
  local label="$1"
  shift
  local start=$SECONDS
  "$dwdp" run "$@" --format json >/tmp/dwdp-soak.json
  python3 - "$label" "$((SECONDS - start))" <<'PY'
import json, sys
label, seconds = sys.argv[1], sys.argv[2]
j = json.load(open("/tmp/dwdp-soak.json"))
each = j["totals"]["forward_ns_each"]
steady = each[1:] or each
spread = (max(steady) - min(steady)) / max(steady) if steady else 0.0
print(f"{label}: ok={j['ok']} forwards={j['forwards']} wall={seconds}s "
      f"peak_rss={j.get('host_peak_rss_bytes', 0) / 2**20:.1f}MiB "
      f"first={each[0] / 1e6:.6f}ms steady={steady[0] / 1e6:.6f}ms "
      f"steady_spread={spread:.2e} min={j['forward_ns_min'] / 1e6:.6f}ms "
      f"max={j['forward_ns_max'] / 1e6:.6f}ms hazards={len(j['hazards'])} errors={len(j['errors'])}")
sys.exit(0 if j["ok"] else 1)
PY
}
soak "functional soak-tiny-d3-modeb" scenarios/soak-tiny-d3-modeb.yaml --mode functional \
  --forwards "$functional"
soak "timing default (DeepSeek-V3 NVFP4, GB200, d=4)" scenarios/default.yaml --no-hazards \
  --forwards "$timing"
