#!/usr/bin/env python3
"""Sums Nsight Compute's per-kernel durations by kernel name.

    ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file K.csv PROGRAM
    python3 tools/device/ncu_kernel_times.py K.csv [--after NAME:COUNT] [--top N]

--after keeps only the kernels launched after the COUNT-th launch whose name contains NAME
(e.g. PrefillHistoryKernel:32 skips a warm-up prefill of a 32-layer model).
"""
import argparse
import collections
import csv
import sys

UNITS_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
            "second": 1e6, "s": 1e6}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv")
    p.add_argument("--after", default="", help="NAME:COUNT")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    header, launches = None, []
    with open(a.csv, newline="") as f:
        for r in csv.reader(f):
            if r and r[0] == "ID":
                header = r
            elif header and len(r) == len(header):
                d = dict(zip(header, r))
                if d.get("Metric Name") == "gpu__time_duration.sum":
                    us = float(d["Metric Value"].replace(",", "")) * UNITS_US[d["Metric Unit"]]
                    launches.append((int(d["ID"]), d["Kernel Name"], us))
    if not launches:
        sys.exit(f"{a.csv}: no gpu__time_duration.sum rows")
    launches.sort()
    if a.after:
        name, count = a.after.rsplit(":", 1)
        seen, start = 0, None
        for i, (_, k, _) in enumerate(launches):
            if name in k:
                seen += 1
                if seen == int(count):
                    start = i + 1
                    break
        if start is None:
            sys.exit(f"--after {a.after}: only {seen} launches match")
        launches = launches[start:]
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for _, k, us in launches:
        short = k.replace("(anonymous namespace)::", "").split("(")[0][:100]
        by_name[short][0] += 1
        by_name[short][1] += us
    total = sum(v[1] for v in by_name.values())
    print(f"{len(launches)} launches, {total / 1e3:.1f} ms of kernel time")
    print("| kernel | launches | ms | share |\n| --- | ---: | ---: | ---: |")
    for k, (n, us) in sorted(by_name.items(), key=lambda x: -x[1][1])[: a.top]:
        print(f"| `{k}` | {n} | {us / 1e3:.2f} | {100 * us / total:.1f}% |")


if __name__ == "__main__":
    main()
