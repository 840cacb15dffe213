#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Turns the Google Benchmark JSON of bench/attention_bench into the plots under docs/:

  docs/time_vs_n.svg     time against n (log-log), every pattern on one chart, with n^2 and n guides
  docs/fma_fraction.svg  achieved GFLOP/s on computed pairs as a fraction of ceiling/fma, per pattern

usage: scripts/plot_bench.py bench.json [--d 64] [--threads 2] [--out docs]
"""
import argparse
import json
import re
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["naive_dense", "dense", "causal", "strided", "block_topk", "dsa", "local", "longformer", "bigbird"]


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = [b for b in data["benchmarks"] if b.get("run_type", "iteration") == "aggregate" and b.get("aggregate_name") == "median"]
    if not rows:  # no repetitions: every row is a single measurement
        rows = [b for b in data["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    return data.get("context", {}), rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--format", default="svg", choices=["svg", "png"])
    ap.add_argument("--machine", default=None, help="label of the machine (default: from the JSON context)")
    args = ap.parse_args()
    context, rows = load(args.json)

    times = defaultdict(dict)
    gflops = defaultdict(dict)
    fma = None
    for b in rows:
        name = b.get("run_name", b["name"])
        m = re.match(r"attention/([a-z_]+)/n:(\d+)/d:(\d+)/omp:(\d+)", name)
        if m and int(m.group(3)) == args.d and int(m.group(4)) == args.threads:
            n = int(m.group(2))
            times[m.group(1)][n] = b["real_time"] / (1e3 if b.get("time_unit") == "us" else 1.0)
            gflops[m.group(1)][n] = b["gflops"]
        if name.startswith(f"ceiling/fma/omp:{args.threads}"):
            fma = b["gflops"]

    machine = args.machine or f"{context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz"
    patterns = [p for p in ORDER if p in times] + sorted(p for p in times if p not in ORDER)

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for p in patterns:
        ns = sorted(times[p])
        ax.loglog(ns, [times[p][n] for n in ns], marker="o", label=p, linestyle="--" if p == "naive_dense" else "-")
    if "dense" in times:  # guides through dense's first point: n^2 and n
        n0 = min(times["dense"])
        t0 = times["dense"][n0]
        xs = [n0, 131072]
        ax.loglog(xs, [t0 * (x / n0) ** 2 for x in xs], color="grey", linewidth=0.8, linestyle=":", label="~ n^2")
        ax.loglog(xs, [t0 / 8 * (x / n0) for x in xs], color="grey", linewidth=0.8, linestyle="-.", label="~ n")
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel("time per call [ms]")
    ax.set_title(f"8 heads, d = {args.d}, float, {args.threads} threads ({machine})")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(f"{args.out}/time_vs_n.{args.format}")

    if fma:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for p in patterns:
            ns = sorted(gflops[p])
            ax.semilogx(ns, [gflops[p][n] / fma for n in ns], marker="o", label=p,
                        linestyle="--" if p == "naive_dense" else "-")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("sequence length n (tokens)")
        ax.set_ylabel(f"GFLOP/s on computed pairs / FMA ceiling ({fma:.0f} GFLOP/s)")
        ax.set_title(f"Fraction of the FMA peak: 8 heads, d = {args.d}, float, {args.threads} threads ({machine})", fontsize=10)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(f"{args.out}/fma_fraction.{args.format}")


if __name__ == "__main__":
    main()
