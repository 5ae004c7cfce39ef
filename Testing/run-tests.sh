#!/usr/bin/env bash
# Installs what the test suite needs (the engine with its test extras; Debian's dicom3tools for the
# DICOM conformance checks) and runs the whole pytest suite; then runs the tests that use Slicer's
# MRML (marked `slicer`) a second time against slicer-core 5.12.x, the Slicer version the extension
# targets (the first run uses the newest slicer-core). Extra arguments go to both pytest runs,
# e.g. `bash Testing/run-tests.sh --run-slow` for the long scientific checks too.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
if ! command -v dciodvfy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dicom3tools >/dev/null) \
      || echo "warning: could not install dicom3tools; DICOM conformance tests will be skipped" >&2
  else
    echo "warning: dciodvfy not found (Debian package dicom3tools); conformance tests will be skipped" >&2
  fi
fi
python3 -m pytest "$@"

# The targeted Slicer: a virtual environment that sees everything installed above but its own
# slicer-core 5.12.x (kept in build/, which git ignores; reused by later runs).
SLICER_TARGET=5.12
venv="build/venv-slicer-$SLICER_TARGET"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "slicer-core>=$SLICER_TARGET,<5.13"
echo "--- tests using Slicer's MRML, again with slicer-core $SLICER_TARGET.x ---"
DCEUS_EXPECT_SLICER_CORE=$SLICER_TARGET "$venv/bin/python" -m pytest -m slicer "$@"
