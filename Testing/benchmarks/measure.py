"""Time and peak memory of one command, each in a child process of its own.

``ru_maxrss`` of a child is not its own peak on Linux: ``exec`` carries the high-water mark of the
memory it replaces into the new image's figure (the forked or vfork-ed copy of the benchmark), so a
child started from a benchmark holding a large clip reports the benchmark's peak. ``VmHWM`` in
``/proc/self/status`` belongs to the new image's memory alone; the child reads it just before it exits.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
started = time.perf_counter()
{imports}
imported = time.perf_counter()
{body}
finished = time.perf_counter()
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({{"import_s": imported - started, "seconds": finished - imported, "peak_mib": peak_kib / 1024}}),
      file=sys.stderr)
"""

READ_CLIP = ("from DCEUSResponseLib.io.clips import read_any_clip",
             "clip = read_any_clip({path!r}); clip.frames.max()")


def cli_command(argv: list[str]) -> tuple[str, str]:
    """The child's imports and body for one command line of ``dceus`` (output to /dev/null)."""
    return ("import contextlib, os\nfrom DCEUSResponseLib.app.cli import main",
            "with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):\n"
            f"    code = main({argv!r})\n"
            "if code != 0:\n    raise SystemExit(f'exit status {{code}}')")


def run_child(imports: str, body: str) -> dict:
    """Run ``body`` after ``imports`` in a fresh interpreter: its seconds (after imports), import
    seconds, whole-process wall seconds (``process_s``) and peak resident memory (``peak_mib``)."""
    code = _CHILD.format(repo=REPO, imports=imports, body=body)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": REPO})
    process_s = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"measured command failed:\n{result.stderr[-2000:]}")
    figures = json.loads(result.stderr.strip().splitlines()[-1])
    figures["process_s"] = process_s
    return figures


def read_baseline(path: str) -> dict:
    """Reading and decoding ``path`` alone (the floor every clip command pays)."""
    imports, body = READ_CLIP
    return run_child(imports, body.format(path=path))


def ratio_line(name: str, figures: dict, baseline: dict) -> str:
    """One printed line: time and peak memory, each also as a ratio to the baseline's."""
    return (f"{name:52s} {figures['seconds']:7.2f} s ({figures['seconds'] / baseline['seconds']:6.1f}x read), "
            f"process {figures['process_s']:6.2f} s ({figures['process_s'] / baseline['process_s']:5.1f}x), "
            f"peak {figures['peak_mib']:6.0f} MiB ({figures['peak_mib'] / baseline['peak_mib']:4.2f}x)")
