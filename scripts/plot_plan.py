#!/usr/bin/python3
"""Plot a `dwdp plan --format csv` sweep against dwdp_size, or with --pareto the Pareto plot
of a sizing run (`dwdp plan --rate R --ttft-p99 MS --pareto-out PARETO.csv`).

Pareto mode: context tokens/s per GPU against TTFT p99, one colour per parallelism (DWDP,
DEP); every simulated load is a faint point, the front (no other point serves more per GPU at
a lower TTFT p99) a line.

Three panels sharing the x axis:
  1. per MoE layer: copy time, compute time and exposed stall (ms), one colour per workload
     point (tokens per rank, sequence length);
  2. KV cache left per GPU (GiB), one line per num_buffers; points that do not fit are crossed;
  3. DEP time / DWDP time (> 1: DWDP faster).
When the CSV holds several recipes per size (--all-recipes), the least-overlap one is drawn.

Usage: scripts/plot_plan.py PLAN.csv OUT.png [--title TEXT]
       scripts/plot_plan.py --pareto PARETO.csv OUT.png [--title TEXT]
Needs python3-matplotlib (Debian; scripts/setup.sh installs it).
"""

import argparse
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

GIB = float(1 << 30)


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"error: {path} has no candidates")
    needed = {"dwdp_size", "num_buffers", "tokens_per_rank", "sequence_length", "overlap",
              "fits", "kv_bytes_per_gpu", "prefetch_ns_per_layer", "compute_ns_per_layer",
              "stall_ns_per_layer", "dwdp_over_dep"}
    missing = needed - set(rows[0])
    if missing:
        sys.exit(f"error: {path} lacks columns {sorted(missing)}; "
                 "write it with `dwdp plan --format csv`")
    # Keep the least-overlap recipe per (workload, d, k).
    best = {}
    for r in rows:
        key = (int(r["tokens_per_rank"]), int(r["sequence_length"]), int(r["dwdp_size"]),
               int(r["num_buffers"]))
        if key not in best or int(r["overlap"]) < int(best[key]["overlap"]):
            best[key] = r
    return best


def plot_pareto(path, png, title):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"error: {path} has no points")
    needed = {"kind", "label", "tokens_per_s_per_gpu", "ttft_p99_ms", "on_front"}
    missing = needed - set(rows[0])
    if missing:
        sys.exit(f"error: {path} lacks columns {sorted(missing)}; "
                 "write it with `dwdp plan --rate R --ttft-p99 MS --pareto-out FILE`")
    fig, ax = plt.subplots(figsize=(9, 6))
    colours = {"DWDP": "tab:blue", "DEP": "tab:orange"}
    for kind, colour in colours.items():
        pts = [r for r in rows if r["kind"] == kind]
        if not pts:
            continue
        ax.scatter([float(r["ttft_p99_ms"]) for r in pts],
                   [float(r["tokens_per_s_per_gpu"]) for r in pts],
                   s=8, alpha=0.25, color=colour)
        front = sorted((float(r["ttft_p99_ms"]), float(r["tokens_per_s_per_gpu"]), r["label"])
                       for r in pts if r["on_front"] == "1")
        ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color=colour,
                markersize=4, label=f"{kind} front")
        if front:
            best = front[-1]
            ax.annotate(best[2], (best[0], best[1]), fontsize=7, color=colour,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("TTFT p99 (ms)")
    ax.set_ylabel("context tokens/s per GPU")
    ax.set_title(title or "DWDP vs DEP: throughput per GPU against TTFT p99")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--title", default="")
    parser.add_argument("--pareto", action="store_true",
                        help="the CSV is a sizing run's --pareto-out file")
    args = parser.parse_args()
    if args.pareto:
        plot_pareto(args.csv, args.png, args.title)
        return
    best = load(args.csv)

    workloads = sorted({(t, s) for (t, s, _, _) in best})
    buffers = sorted({k for (_, _, _, k) in best})
    k0 = buffers[0]
    fig, (ax_time, ax_kv, ax_ratio) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    for i, (t, s) in enumerate(workloads):
        c = colours[i % len(colours)]
        pts = sorted((d, r) for (tt, ss, d, k), r in best.items() if (tt, ss, k) == (t, s, k0))
        ds = [d for d, _ in pts]
        label = f"{t} tok/rank, ISL {s}"
        ax_time.plot(ds, [float(r["stall_ns_per_layer"]) / 1e6 for _, r in pts], "-o",
                     color=c, markersize=3, label=f"stall, {label}")
        ax_time.plot(ds, [float(r["compute_ns_per_layer"]) / 1e6 for _, r in pts], ":",
                     color=c, label=f"compute, {label}")
        ax_ratio.plot(ds, [float(r["dwdp_over_dep"]) for _, r in pts], "-o", color=c,
                      markersize=3, label=label)
        if i == 0:
            ax_time.plot(ds, [float(r["prefetch_ns_per_layer"]) / 1e6 for _, r in pts], "--",
                         color="black", label="copy (all workloads)")

    # KV memory does not depend much on the sequence length; draw the first workload point.
    t, s = workloads[0]
    for j, k in enumerate(buffers):
        pts = sorted((d, r) for (tt, ss, d, kk), r in best.items() if (tt, ss, kk) == (t, s, k))
        ds = [d for d, _ in pts]
        kv = [float(r["kv_bytes_per_gpu"]) / GIB for _, r in pts]
        c = colours[j % len(colours)]
        ax_kv.plot(ds, kv, "-o", color=c, markersize=3, label=f"{k} slots")
        unfit = [(d, v) for (d, r), v in zip(pts, kv) if r["fits"] != "1"]
        if unfit:
            ax_kv.plot([d for d, _ in unfit], [v for _, v in unfit], "x", color="red",
                       markersize=8, label="does not fit" if j == 0 else None)

    ax_time.set_ylabel("per MoE layer (ms)")
    ax_time.set_title(args.title or "DWDP copy vs compute per MoE layer")
    ax_time.legend(fontsize=8, ncol=2)
    ax_time.grid(alpha=0.3)
    ax_kv.set_ylabel("KV cache per GPU (GiB)")
    ax_kv.set_title(f"memory left for KV ({t} tok/rank, ISL {s})")
    ax_kv.legend(fontsize=8)
    ax_kv.grid(alpha=0.3)
    ax_ratio.axhline(1.0, color="grey", linewidth=1)
    ax_ratio.set_ylabel("DEP time / DWDP time")
    ax_ratio.set_xlabel("dwdp_size (GPUs per DWDP group)")
    ax_ratio.set_title(f"DWDP vs DEP on the same GPUs ({k0} slots; > 1: DWDP faster)")
    ax_ratio.legend(fontsize=8)
    ax_ratio.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
