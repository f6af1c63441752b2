#!/bin/sh
# A transaction adapter that says something on stderr before it becomes the
# Python 2PC example: the test checks the words reach the run's log file.
echo "noisy coordinator $FAULTLINE_PROCESS starting" >&2
exec /usr/bin/python3 "$(dirname "$0")/../../../../examples/python/twopc.py" "$@"
