#!/usr/bin/env python3
"""Checks the house rules on code shape: no production file over 800 lines, no function
over 80 (README "Code"; issue 18).

Production code is every tracked .cc/.h/.cu/.cuh file except tests (`*_test.cc`,
`*_test.cu`): a TEST body reads as a list of cases, and splitting it hides the case.
Lambdas count as functions; a function's length runs from the line of its opening brace
to the line of its closing brace, both included. Namespaces, classes, structs, enums,
initialiser lists and control blocks are not functions.

Usage (from the repository root, or with --root):

    python3 tools/lint/code_shape.py [--max_file_lines=800] [--max_function_lines=80]
        [FILE ...]

Without FILE arguments it checks `git ls-files` under the root. Prints each breach as
`path:line: what` and exits 1 if there is any.
"""

import argparse
import os
import re
import subprocess
import sys

SOURCE_SUFFIXES = (".cc", ".h", ".cu", ".cuh")
TEST_RE = re.compile(r"_test\.(cc|cu)$")

# Comments, raw strings, strings and character literals, in one pass so that "//" inside a
# string or a quote inside a comment does not confuse the other.
TOKEN_RE = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r'|R"(?P<delim>[^(\s]*)\((?:.|\n)*?\)(?P=delim)"'
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'(?:\\.|[^'\\\n])*'",
    re.S,
)
# A preprocessor line (with its continuations): its text is not code structure.
PREPROCESSOR_RE = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)
NOT_A_FUNCTION_RE = re.compile(
    r"^(?:.*\b(?:namespace|class|struct|union|enum)\b[^()]*"
    r"|.*\b(?:if|for|while|switch|catch)\s*\(.*"
    r"|.*\b(?:else|do|try)\s*)$"
)


def Blank(text):
    """The text with comments, literals and preprocessor lines blanked, newlines kept."""

    def Keep(m):
        s = m.group(0)
        if s.startswith(("//", "/*", "R\"", "#")) or s.lstrip().startswith("#"):
            return "\n" * s.count("\n")
        return s[0] * 2  # "" or ''

    return PREPROCESSOR_RE.sub(Keep, TOKEN_RE.sub(Keep, text))


def IsFunctionHead(head):
    """Whether the text before a `{` opens a function or lambda body."""
    h = re.sub(r"\{[^{}]*\}", "()", " ".join(head.split()))  # w_{v} reads as w_(v)
    if not h.endswith((")", "const", "override", "final", "noexcept", "mutable")) and not re.search(
        r"\)\s*(?:const\s*)?(?:noexcept\s*)?(?:->\s*[\w:<>,\s*&]+)?$", h
    ):
        return False
    if re.search(r"\]\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*(?:mutable\s*)?(?:->.*)?$", h):
        return True  # a lambda
    if NOT_A_FUNCTION_RE.match(h):
        return False
    # A constructor's initialiser list ends with `member(value)`; the head still names the
    # function before the `:`, which is what we want to count from.
    return re.search(r"[\w>~]\s*\(", h) is not None


def IsBraceInitialiser(head):
    """Whether a `{` after this text starts a brace initialiser inside an expression."""
    h = " ".join(head.split())
    return (
        re.search(r"[\w>]$", h) is not None
        and re.search(r"\b(?:namespace|class|struct|union|enum|else|do|try)\b", h) is None
        and re.search(r"\)\s*(?:const|override|final|noexcept|mutable)$", h) is None
    )


def LongFunctions(text, limit):
    """(line, length, head) for every function body longer than `limit` lines."""
    src = Blank(text)
    stack, out, line, last = [], [], 1, 0
    for i, c in enumerate(src):
        if c == "\n":
            line += 1
        elif c == "{":
            head = src[last:i]
            stack.append((line, IsFunctionHead(head), head))
            if not IsBraceInitialiser(head):
                last = i + 1
        elif c == "}":
            if not stack:
                raise ValueError(f"unbalanced '}}' at line {line}")
            start, is_function, head = stack.pop()
            length = line - start + 1
            if is_function and length > limit:
                out.append((start, length))
            # After a brace initialiser (`w_{v}` in a constructor's initialiser list) the
            # head of the block that follows is still being read.
            if not IsBraceInitialiser(head):
                last = i + 1
        elif c == ";":
            last = i + 1
    return out


def Check(root, files, max_file_lines, max_function_lines):
    breaches = []
    for path in files:
        if not path.endswith(SOURCE_SUFFIXES) or TEST_RE.search(path):
            continue
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if lines > max_file_lines:
            breaches.append(f"{path}:1: {lines} lines (limit {max_file_lines})")
        try:
            for start, length in LongFunctions(text, max_function_lines):
                breaches.append(
                    f"{path}:{start}: function of {length} lines (limit {max_function_lines})"
                )
        except ValueError as e:
            breaches.append(f"{path}: cannot read its braces: {e}")
    return breaches


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    p.add_argument("--max_file_lines", type=int, default=800)
    p.add_argument("--max_function_lines", type=int, default=80)
    p.add_argument("files", nargs="*")
    a = p.parse_args()
    files = a.files or subprocess.run(
        ["git", "-C", a.root, "ls-files"], check=True, capture_output=True, text=True
    ).stdout.split()
    breaches = Check(a.root, files, a.max_file_lines, a.max_function_lines)
    for b in breaches:
        print(b)
    checked = sum(1 for f in files if f.endswith(SOURCE_SUFFIXES) and not TEST_RE.search(f))
    print(f"code_shape: {checked} production files, {len(breaches)} breaches", file=sys.stderr)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
