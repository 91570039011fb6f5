#!/usr/bin/env python3
"""Builds the training corpus of the bundled model from text shipped in Debian packages.

Sources (licences recorded in the manifest; see models/README.md):
  * python3.11 standard library and its test suite: .py files   (PSF-2.0)
  * python3.11-doc: reStructuredText sources of the Python docs   (PSF-2.0)
  * manpages, manpages-dev: Linux man-pages rendered by groff     (GPL-2+, BSD and
    "verbatim" per page; /usr/share/doc/manpages/copyright)

Every file is one document and is never split, so long files give 4K+ token sequences.
Documents are assigned to train / valid / heldout by a hash of their path, so the split is
stable when packages change. The held-out part is never used to train the model, the
tokenizer or the attention predictor.

Output: OUT/{train,valid,heldout}.jsonl ({"id", "source", "text"} per line) and
OUT/manifest.json (package versions, document and byte counts, sha256 of each split).
Needs only the Python standard library and groff. Run tools/setup.sh first.
"""
import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SPLITS = (("heldout", 5), ("valid", 5), ("train", 90))  # percent, by path hash
PY = "/usr/lib/python3.11"
PYDOC = "/usr/share/doc/python3.11/html/_sources"
MAN_PACKAGES = ("manpages", "manpages-dev")
SOURCES = {
    "python-stdlib": {"packages": ["libpython3.11-stdlib", "libpython3.11-testsuite"],
                      "license": "PSF-2.0", "copyright": "/usr/share/doc/python3.11/copyright"},
    "python-docs": {"packages": ["python3.11-doc"], "license": "PSF-2.0",
                    "copyright": "/usr/share/doc/python3.11-doc/copyright"},
    "man-pages": {"packages": list(MAN_PACKAGES),
                  "license": "GPL-2+ / BSD-2-clause / verbatim (per page)",
                  "copyright": "/usr/share/doc/manpages/copyright"},
}
MIN_CHARS = 200  # shorter files carry no long-range structure


def split_of(doc_id):
    h = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) % 100
    acc = 0
    for name, pct in SPLITS:
        acc += pct
        if h < acc:
            return name
    raise AssertionError


def package_version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"build_corpus: package {pkg} is not installed (run tools/setup.sh)")
    return out.stdout


def read_text(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # a handful of test files are deliberately not UTF-8


def python_docs():
    for root, dirs, files in os.walk(PY):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "site-packages", "dist-packages"))
        for f in sorted(files):
            if f.endswith(".py"):
                p = os.path.join(root, f)
                yield "python-stdlib", p, lambda p=p: read_text(p)
    for root, dirs, files in os.walk(PYDOC):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".txt"):
                p = os.path.join(root, f)
                yield "python-docs", p, lambda p=p: read_text(p)


def render_man(path):
    with gzip.open(path, "rb") as f:
        src = f.read()
    if src.lstrip().startswith(b".so "):
        return None  # an alias page pointing at another page
    out = subprocess.run(["groff", "-t", "-mandoc", "-Tutf8", "-P-cbou", "-rLL=80n"],
                         input=src, capture_output=True, env={**os.environ, "GROFF_NO_SGR": "1"})
    if out.returncode != 0:
        return None
    text = out.stdout.decode("utf-8", errors="replace")
    lines, blank = [], 0
    for line in text.splitlines():  # collapse groff's runs of blank lines
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def man_docs():
    files = subprocess.run(["dpkg", "-L", *MAN_PACKAGES], capture_output=True, text=True, check=True)
    for p in sorted(set(files.stdout.split())):
        if "/man/man" in p and p.endswith(".gz") and os.path.isfile(p) and not os.path.islink(p):
            yield "man-pages", p, lambda p=p: render_man(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    items = list(python_docs()) + list(man_docs())
    print(f"build_corpus: {len(items)} candidate files", file=sys.stderr)
    with ThreadPoolExecutor(args.jobs) as pool:
        texts = list(pool.map(lambda it: it[2](), items))

    outs = {name: open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8") for name, _ in SPLITS}
    stats = {name: {"documents": 0, "chars": 0, "by_source": {}} for name, _ in SPLITS}
    skipped = 0
    for (source, path, _), text in zip(items, texts):
        if text is None or len(text) < MIN_CHARS:
            skipped += 1
            continue
        split = split_of(path)
        outs[split].write(json.dumps({"id": path, "source": source, "text": text}, ensure_ascii=False) + "\n")
        s = stats[split]
        s["documents"] += 1
        s["chars"] += len(text)
        s["by_source"][source] = s["by_source"].get(source, 0) + 1
    for f in outs.values():
        f.close()

    for name, _ in SPLITS:
        with open(os.path.join(args.out, f"{name}.jsonl"), "rb") as f:
            stats[name]["sha256"] = hashlib.sha256(f.read()).hexdigest()
    manifest = {
        "sources": {k: {**v, "versions": {p: package_version(p) for p in v["packages"]}} for k, v in SOURCES.items()},
        "split_rule": "sha256(path) % 100: " + ", ".join(f"{n} {p}%" for n, p in SPLITS),
        "min_chars": MIN_CHARS,
        "skipped_files": skipped,
        "splits": stats,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    for name, _ in SPLITS:
        s = stats[name]
        print(f"build_corpus: {name:8s} {s['documents']:6d} documents {s['chars'] / 1e6:8.1f} M chars", file=sys.stderr)


if __name__ == "__main__":
    main()
