#!/usr/bin/env python3
"""Draws a dwdp Chrome trace (dwdp run --trace FILE) as a PNG timeline: one row per
(rank, stream), copies in blue, kernels in green, waits in red.

    python3 scripts/plot_trace.py trace.json trace.png [--start-ms 0] [--span-ms 60]
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"copy": "#3b6fb6", "edge copy": "#7aa6e0", "kernel": "#3c9a5f", "wait": "#d0453b",
          "fill": "#999999"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("png")
    parser.add_argument("--start-ms", type=float, default=0.0)
    parser.add_argument("--span-ms", type=float, default=60.0)
    args = parser.parse_args()
    events = json.load(open(args.trace))["traceEvents"]
    names = {}
    for e in events:
        if e.get("ph") == "M" and e["name"] == "thread_name":
            names[(e["pid"], e["tid"])] = e["args"]["name"]
    slices = [e for e in events if e.get("ph") == "X"]
    rows = sorted({(e["pid"], e["tid"]) for e in slices})
    begin_us = min(e["ts"] for e in slices) + args.start_ms * 1e3
    end_us = begin_us + args.span_ms * 1e3
    fig, ax = plt.subplots(figsize=(14, 0.45 * len(rows) + 1.5))
    for y, row in enumerate(rows):
        for e in slices:
            if (e["pid"], e["tid"]) != row or e["ts"] > end_us or e["ts"] + e["dur"] < begin_us:
                continue
            ax.broken_barh([((e["ts"] - begin_us) / 1e3, e["dur"] / 1e3)], (y - 0.4, 0.8),
                           facecolors=COLORS.get(e.get("cat"), "#bbbbbb"), edgecolor="white",
                           linewidth=0.3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"rank {p} {names.get((p, t), t)}" for p, t in rows])
    ax.set_xlim(0, args.span_ms)
    ax.set_xlabel("ms")
    ax.invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    ax.legend(handles, COLORS.keys(), loc="upper right", ncol=len(COLORS), fontsize=8)
    ax.set_title(f"{args.trace}: {args.start_ms:g}-{args.start_ms + args.span_ms:g} ms")
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
