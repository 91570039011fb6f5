#!/usr/bin/env python3
"""Compares the markdown tables of two runs of one benchmark (old, new), row by row.

Rows must come in the same order with the same labels (cells without a digit, and every
cell of the columns named in --same, e.g. context, batch and note); for every column
whose header names a time ("ms" or "s/step"), prints new / old per row and the spread.
Used for the same-call A/B of tools/device/bench_ab.sh.

    python3 tools/device/compare_tables.py OLD.md NEW.md [--same=context,batch]

Exits 1 when the tables differ in shape or labels.
"""

import argparse
import re
import statistics
import sys

NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def Tables(path):
    """Each markdown table of the file as (header cells, rows of cells)."""
    tables, header, rows = [], None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("|"):
                if header is not None:
                    tables.append((header, rows))
                header, rows = None, []
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                rows.append(cells)
    if header is not None:
        tables.append((header, rows))
    return tables


def IsTime(header):
    return re.search(r"\bms\b|ms/step|\(ms", header) is not None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--same", default="", help="numeric columns that must match exactly")
    a = p.parse_args()
    same = set(filter(None, a.same.split(",")))
    old, new = Tables(a.old), Tables(a.new)
    ok = True
    if len(old) != len(new):
        print(f"{len(old)} tables in {a.old}, {len(new)} in {a.new}")
        return 1
    for t, ((ho, ro), (hn, rn)) in enumerate(zip(old, new)):
        if ho != hn or len(ro) != len(rn):
            print(f"table {t}: header or row count differs ({len(ro)} / {len(rn)} rows)")
            ok = False
            continue
        ratios = {h: [] for h in ho if IsTime(h)}
        for i, (x, y) in enumerate(zip(ro, rn)):
            for h, cx, cy in zip(ho, x, y):
                numeric = NUMBER.match(cx) and NUMBER.match(cy)
                label = h in same or not re.search(r"\d", cx + cy)
                if label and cx != cy:
                    print(f"table {t} row {i} column '{h}': '{cx}' / '{cy}'")
                    ok = False
                if numeric and h in ratios and float(cx) > 0:
                    ratios[h].append(float(cy) / float(cx))
        for h, r in ratios.items():
            if r:
                print(f"table {t} ({len(ro)} rows) '{h}': new / old min {min(r):.3f} median "
                      f"{statistics.median(r):.3f} max {max(r):.3f}")
    print("labels: same" if ok else "labels: DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
