#!/usr/bin/env bash
# Installs what the test suite needs (the engine with its test extras; Debian's dicom3tools for the
# DICOM conformance checks) and runs the whole pytest suite. Extra arguments go to pytest,
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
exec python3 -m pytest "$@"
