#!/usr/bin/env bash
# Every link from the docs to a line of code still points at the line its title names
# (tools/docs/code_links.py --check; to repair after code moved: run it with --fix from the
# repository root). Runs in the runfiles root, where the docs and the linked files are data.
set -euo pipefail
cd "${TEST_SRCDIR:?}/${TEST_WORKSPACE:?}"
exec python3 tools/docs/code_links.py --check --root .
