#!/usr/bin/env python3
"""Keeps the docs' links to lines of code pointing at the right lines.

A markdown link in docs/*.md or README.md whose URL is a path in this repository with a
line anchor must name what it points at in its title, which is an exact substring of
that line (a function name or a short, distinctive code fragment):

    [cuda_decoder_step.cc:47](../backends/cuda/cuda_decoder_step.cc#L47 "CudaDecoder::PrepareStep")

The link's text may end with ":<n>"; that number must equal the anchor's.

Usage (from the repository root, or with --root):

    python3 tools/docs/code_links.py [--check] [FILE.md ...]
        Lists every link whose file is missing, whose line is out of range, whose text's
        number differs from its anchor, that has no title, or whose title is not on its
        line; exits 1 if there is any.
    python3 tools/docs/code_links.py --fix [FILE.md ...]
        Moves each titled link whose title is not on its line to the line where it is (of
        several, the one nearest the old line; a title that is a function name prefers its
        definition, `Name(` after `::` or opening a definition line), and rewrites the
        anchor and the text's number. Lists what it moved and what it could not fix; exits
        1 if anything is left to fix by hand.

Without FILE arguments it reads docs/*.md and README.md under the root. The root defaults
to the folder two levels above this script (the repository root, or the runfiles root of
//tools/docs:code_links_test).
"""

import argparse
import glob
import os
import re
import sys

# [text](path#L123 "title") -- the title in double or single quotes, with backslash escapes.
LINK_RE = re.compile(
    r"(?<!!)\[(?P<text>[^\]\n]*)\]"
    r"\((?P<url>[^)\s]+?)"
    r"(?:\s+(?P<title>\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'))?\s*\)")
ANCHOR_RE = re.compile(r"^(?P<path>[^#]+)#L(?P<line>\d+)$")
TEXT_NUMBER_RE = re.compile(r":(\d+)$")
FUNCTION_RE = re.compile(r"^~?[A-Za-z_]\w*(?:::~?[A-Za-z_]\w*)*$")
NOT_A_TYPE = {"return", "else", "if", "while", "for", "switch", "case", "throw", "new",
              "delete", "co_return", "goto", "do", "sizeof"}


class Link:
    def __init__(self, doc, lineno, match):
        self.doc = doc
        self.lineno = lineno  # 1-based line of the doc
        self.match = match
        self.text = match.group("text")
        self.url = match.group("url")
        raw = match.group("title")
        self.title = None if raw is None else re.sub(r"\\(.)", r"\1", raw[1:-1])
        a = ANCHOR_RE.match(self.url)
        self.path = a.group("path")
        self.line = int(a.group("line"))

    def where(self):
        return f"{self.doc.rel}:{self.lineno}: {self.match.group(0)}"


class Doc:
    def __init__(self, root, path):
        self.path = path
        self.rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            self.lines = f.read().split("\n")


def code_links(root, doc):
    """The doc's links to a line of a file in the repository, outside code fences."""
    links = []
    fence = None
    for i, line in enumerate(doc.lines):
        stripped = line.lstrip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            mark = stripped[:3]
            if fence is None:
                fence = mark
            elif fence == mark:
                fence = None
            continue
        if fence is not None:
            continue
        for m in LINK_RE.finditer(line):
            url = m.group("url")
            if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url) or url.startswith(("/", "#")):
                continue  # another site, an absolute path or a place in this doc
            if ANCHOR_RE.match(url):
                links.append(Link(doc, i + 1, m))
    return links


def target_file(root, link):
    """The linked file's path, or None when it leaves the repository."""
    full = os.path.normpath(os.path.join(os.path.dirname(link.doc.path), link.path))
    if os.path.relpath(full, root).startswith(".."):
        return None
    return full


_file_cache = {}


def read_lines(path):
    if path not in _file_cache:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                _file_cache[path] = f.read().split("\n")
        except OSError:
            _file_cache[path] = None
    lines = _file_cache[path]
    if lines is not None and lines and lines[-1] == "":
        lines = lines[:-1]  # the newline that ends the last line opens no line
    return lines


def problems(root, link):
    """What is wrong with the link, as short phrases (empty: nothing)."""
    out = []
    m = TEXT_NUMBER_RE.search(link.text)
    if m and int(m.group(1)) != link.line:
        out.append(f"the text says line {m.group(1)}, the anchor L{link.line}")
    path = target_file(root, link)
    lines = read_lines(path) if path else None
    if lines is None:
        why = "" if path else " in the repository"
        if path and os.environ.get("TEST_SRCDIR"):
            why = " among the test's data (add it to tests/docs/BUILD)"
        out.append(f"no file {link.path}{why}")
    elif not 1 <= link.line <= len(lines):
        out.append(f"line {link.line} is out of range ({link.path} has {len(lines)} lines)")
    if link.title is None:
        out.append('no title naming what it points at: (path#Ln "fragment of line n")')
    elif not link.title:
        out.append("an empty title")
    elif lines is not None and 1 <= link.line <= len(lines) and link.title not in lines[link.line - 1]:
        out.append(f"{link.title!r} is not on line {link.line}")
    return out


def is_definition(line, title):
    """Whether `line` defines the function named `title` (plain or qualified)."""
    if line.rstrip().endswith(";"):
        return False  # a declaration or a call
    name = re.escape(title) + r"\s*\("
    if not line[:1].isspace() and re.search(r"::" + name, line):
        return True  # ReturnType Class::Name( at the start of a line
    m = re.match(r"^\s*((?:[A-Za-z_][\w:<>,*&]*[\s*&]+)+)" + name, line)
    if not m:
        return False
    first = m.group(1).split()[0]
    return first not in NOT_A_TYPE


def new_line(lines, link):
    """The line the title now is on, or None where it is on no line."""
    title = link.title
    hits = [i + 1 for i, l in enumerate(lines) if title in l]
    if not hits:
        return None
    if FUNCTION_RE.match(title):
        defs = [n for n in hits if is_definition(lines[n - 1], title)]
        if defs:
            hits = defs
    return min(hits, key=lambda n: (abs(n - link.line), n))


def fix_doc(root, doc, links):
    """Rewrites the doc's stale titled links in place; returns (moved, left)."""
    moved, left = [], []
    # Right to left within a line, so earlier matches keep their offsets.
    for link in sorted(links, key=lambda k: (k.lineno, -k.match.start())):
        if not problems(root, link):
            continue
        path = target_file(root, link)
        lines = read_lines(path) if path else None
        if link.title is None or not link.title or lines is None:
            left.append(link)
            continue
        on_line = 1 <= link.line <= len(lines) and link.title in lines[link.line - 1]
        n = link.line if on_line else new_line(lines, link)
        if n is None:
            left.append(link)
            continue
        text = TEXT_NUMBER_RE.sub(f":{n}", link.text)
        url = f"{link.path}#L{n}"
        old = link.match.group(0)
        new = old.replace(f"[{link.text}]", f"[{text}]", 1).replace(
            f"({link.url}", f"({url}", 1)
        row = doc.lines[link.lineno - 1]
        s, e = link.match.start(), link.match.end()
        doc.lines[link.lineno - 1] = row[:s] + new + row[e:]
        moved.append((link, n))
    moved.sort(key=lambda m: (m[0].lineno, m[0].match.start()))
    return moved, left


def docs_to_read(root, files):
    if files:
        return [os.path.abspath(f) for f in files]
    paths = sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    readme = os.path.join(root, "README.md")
    if os.path.exists(readme):
        paths.append(readme)
    return paths


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report stale links (default)")
    mode.add_argument("--fix", action="store_true", help="move titled links to their title's line")
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(here)),
                   help="the repository root (default: two folders above this script)")
    p.add_argument("files", nargs="*", help="markdown files (default: docs/*.md, README.md)")
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    paths = docs_to_read(root, args.files)
    if not paths:
        print(f"code_links: no docs under {root}", file=sys.stderr)
        return 1

    total = 0
    bad = []
    for path in paths:
        doc = Doc(root, path)
        links = code_links(root, doc)
        total += len(links)
        if args.fix:
            moved, left = fix_doc(root, doc, links)
            if moved:
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(doc.lines))
            for link, n in moved:
                print(f"{doc.rel}:{link.lineno}: {link.path}#L{link.line} -> L{n} ({link.title!r})")
            bad.extend((link, problems(root, link)) for link in left)
        else:
            for link in links:
                found = problems(root, link)
                if found:
                    bad.append((link, found))

    for link, found in bad:
        print(f"{link.where()}\n    " + "; ".join(found), file=sys.stderr)
    verb = "left to fix by hand" if args.fix else "stale"
    if bad:
        print(f"code_links: {len(bad)} of {total} links to code {verb}", file=sys.stderr)
        return 1
    print(f"code_links: {total} links to code, all on their titled lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
