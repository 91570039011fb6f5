#!/usr/bin/env bash
# Runs code_shape_test.py (Python's unittest) from the runfiles.
set -euo pipefail
exec python3 "${TEST_SRCDIR:?}/${TEST_WORKSPACE:?}/tools/lint/code_shape_test.py"
