"""A value-for-value snapshot of the demo study's outputs, independent of the engine's own code.

``snapshot(out_dir)`` reads what ``demo --out out_dir`` wrote: ``results.json``, ``parameters.csv``,
``tic.csv`` and ``response.json`` as parsed values, each map's NRRD data summarised
(:func:`_nrrd_summary`), and each scene bundle's nodes (class, name, ``DCEUS.*`` attributes), tables
and the summaries of the voxel data it holds. Paths under ``out_dir`` and the software version are normalised, so
two runs of the same engine into different folders give equal snapshots.

Run as a script to (re)write ``Testing/Data/demo-snapshot.json`` from the installed engine:
``python Testing/golden/demo_snapshot.py`` (only when an output change is intended; say so in the
commit message).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile

import numpy as np

SNAPSHOT_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "Data", "demo-snapshot.json")
EXAMS = ("baseline", "followup")
#: The demo runs with one BLAS/OpenMP thread whenever it is compared or recorded: float32 matrix
#: products (the motion matches' noise moments, the maps' shape dictionary) round differently with
#: another thread count, which moves the results by about 1e-9 relative, so a snapshot recorded on a
#: 2-core machine would not compare equal on an 8-core one (nor after a test that left
#: OPENBLAS_NUM_THREADS=1 in the environment, as Dask's does).
REPRODUCIBLE_THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def demo_environment() -> dict:
    """The environment the demo runs in for a snapshot: this process's, with one BLAS thread."""
    return {**os.environ, **REPRODUCIBLE_THREADS}


# The demo's series and instance UIDs are generated afresh on every run (its study UIDs are fixed).
_RANDOM_UID = re.compile(r"1\.2\.826\.0\.1\.3680043\.8\.498\.\d{20,}")


def _normalise(value, out_dir: str):
    if isinstance(value, dict):
        return {k: _normalise(v, out_dir) for k, v in value.items() if k != "version"}
    if isinstance(value, list):
        return [_normalise(v, out_dir) for v in value]
    if isinstance(value, str):
        return _RANDOM_UID.sub("<UID>", value.replace(out_dir, "<OUT>"))
    return value


def _attribute(text: str, out_dir: str):
    """A ``DCEUS.Name:value`` node attribute, its value parsed when it is JSON."""
    name, _, value = text.partition(":")
    try:
        value = json.loads(value)
    except ValueError:
        pass
    return [name, _normalise(value, out_dir)]


def _csv_rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _nrrd_summary(data: bytes) -> dict:
    """A NRRD's geometry and values: integer data as a digest of its bytes (the clip's pixels) or, with
    few values (a status or label map), the count of each, overall and in each block of a 4 x 4 grid;
    float data (a parametric map) as its count of finite pixels, their 5th, 50th and 95th percentiles,
    and each grid block's finite count and median (where the values are: a flipped or shifted map).

    Not a digest of float maps: CPUs with other vector units (AVX2 / AVX-512) round float32 exp and log
    differently, which moves a few speckle pixels of every map (the medians by up to 5e-5 relative)."""
    import nrrd

    with tempfile.NamedTemporaryFile(suffix=".nrrd") as stream:
        stream.write(data)
        stream.flush()
        array, header = nrrd.read(stream.name)
    summary = {k: str(header.get(k)) for k in ("space directions", "space origin", "space", "sizes")}
    summary["type"] = str(array.dtype)
    if np.issubdtype(array.dtype, np.integer):
        values, counts = np.unique(array, return_counts=True)
        if len(values) <= _FEW_VALUES:
            summary["counts"] = {str(v): int(c) for v, c in zip(values, counts)}
            summary["blocks"] = [{str(v): int(c) for v, c in zip(*np.unique(block, return_counts=True))}
                                 for block in _blocks(array)]
        else:
            summary["sha256"] = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
        return summary
    finite = array[np.isfinite(array)].astype(np.float64)
    summary["finite"] = int(finite.size)
    summary["percentiles 5 50 95"] = [float(v) for v in np.percentile(finite, (5, 50, 95))] if finite.size else []
    summary["blocks"] = [_block_median(block) for block in _blocks(array)]
    return summary


def _blocks(array: np.ndarray) -> list[np.ndarray]:
    """The array's 2-D slices cut into a grid of _GRID x _GRID blocks (where its values are)."""
    plane = array.reshape(array.shape[0], array.shape[1], -1)
    rows = np.array_split(np.arange(plane.shape[0]), _GRID)
    columns = np.array_split(np.arange(plane.shape[1]), _GRID)
    return [plane[np.ix_(r, c)] for r in rows for c in columns]


def _block_median(block: np.ndarray):
    finite = block[np.isfinite(block)]
    return [int(finite.size), float(np.median(finite)) if finite.size else None]


_GRID = 4


_FEW_VALUES = 64


def _scene(path: str, out_dir: str) -> dict:
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        mrml = next(n for n in names if n.endswith(".mrml"))
        root = ElementTree.fromstring(bundle.read(mrml))
        nodes = []
        for element in root:
            attributes = element.get("attributes") or ""
            dceus = sorted(a for a in attributes.split(";") if a.startswith("DCEUS."))
            nodes.append({"class": element.tag, "name": element.get("name"),
                          "dceus": [_attribute(a, out_dir) for a in dceus]})
        nodes.sort(key=lambda n: (n["class"], n["name"] or ""))
        files = {}
        for name in sorted(names):
            short = name.split("/", 1)[1] if "/" in name else name
            if name.endswith(".tsv") or name.endswith(".csv"):
                # as rows of cells, so that numbers compare as numbers (within the test's tolerance)
                files[short] = _csv_rows(bundle.read(name).decode("utf-8"), "\t" if name.endswith(".tsv") else ",")
            elif name.endswith(".nrrd"):
                files[short] = _nrrd_summary(bundle.read(name))
    return {"nodes": nodes, "files": files}


def snapshot(out_dir: str, scenes: bool = True) -> dict:
    out_dir = os.path.abspath(out_dir)
    result = {}
    for exam in EXAMS:
        folder = os.path.join(out_dir, exam)
        with open(os.path.join(folder, "results.json"), encoding="utf-8") as stream:
            results = _normalise(json.load(stream), out_dir)
        entry = {"results.json": results}
        for name in ("parameters.csv", "tic.csv"):
            with open(os.path.join(folder, name), encoding="utf-8") as stream:
                entry[name] = _csv_rows(stream.read())
        maps = {}
        for name in sorted(os.listdir(os.path.join(folder, "maps"))):
            if name.endswith(".nrrd"):
                with open(os.path.join(folder, "maps", name), "rb") as stream:
                    maps[name] = _nrrd_summary(stream.read())
        entry["maps"] = maps
        if scenes:
            entry["scene"] = _scene(os.path.join(folder, f"{exam}.mrb"), out_dir)
        result[exam] = entry
    with open(os.path.join(out_dir, "response", "response.json"), encoding="utf-8") as stream:
        result["response.json"] = _normalise(json.load(stream), out_dir)
    return result


def main() -> int:
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "demo")
        if subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "demo", "--out", out],
                          env=demo_environment()).returncode:
            return 1
        content = snapshot(out)
    with open(SNAPSHOT_PATH, "w", encoding="utf-8") as stream:
        json.dump(content, stream, indent=1, sort_keys=True)
        stream.write("\n")
    print(f"wrote {os.path.abspath(SNAPSHOT_PATH)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
