#!/bin/sh
# Runs a Python test script with Debian's interpreter (which has python3-torch and numpy).
exec /usr/bin/python3 "$@"
