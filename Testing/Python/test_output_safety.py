"""The safety promises of the outputs (issue 9 items 11-17, 24, 25), checked on real processes.

Signals are real: ``python -m DCEUSResponseLib analyze`` runs as a child process; the staging
code's test hook (``DCEUS_TEST_PAUSE_AT``, see :mod:`DCEUSResponseLib.export.staging`) makes it
stop at a named step of the commit and say so on stderr, and the test then sends the signal.
"""
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATIENT_ID, PATIENT_NAME, BIRTH_DATE = "PAT-4711-XQ", "Doe^Jane", "19500102"
# What analyze writes at the top of DIR (rois/ holds the ROI masks as used, for fuse).
CONTRACT_FILES = ("parameters.csv", "results.json", "rois", "tic.csv", "tic.png")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small dual-display clip with the patient's identifiers, and its ROI masks."""
    import pydicom

    folder = tmp_path_factory.mktemp("safety")
    clip = make_clip(panel_shape=(60, 80), n_frames=40, frame_interval_s=2.0, display="dual", seed=3)
    path = str(folder / "clip.dcm")
    write_clip(clip, path, timing="vector", patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    ds = pydicom.dcmread(path)
    ds.PatientBirthDate = BIRTH_DATE
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.save_as(path, enforce_file_format=True)
    masks = write_roi_masks(clip, str(folder / "rois"))
    hostile = dict(clip.roi_masks)
    clip.roi_masks = {"=HYPERLINK(\"evil.example\",\"y\")": hostile["lesion"], "@SUM(1)": hostile["liver"]}
    hostile_seg = write_roi_masks(clip, str(folder / "hostile"))["__segmentation__"]
    return {"folder": folder, "clip": path, "masks": masks, "hostile_seg": hostile_seg}


def _env(**changes):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _analyze_argv(study, out, *extra):
    return ["analyze", study["clip"], "--roi", f"lesion={study['masks']['lesion']}", "--roi",
            f"liver={study['masks']['liver']}", "--reference", "liver", "--no-motion-compensation", *extra,
            "--out", str(out)]


def _run_process(argv, cwd=REPO, **env):
    return subprocess.run([sys.executable, "-m", "DCEUSResponseLib", *argv], capture_output=True, text=True,
                          cwd=cwd, env=_env(**env), timeout=300)


def _contract_set(out):
    """Every file of the analysis under DIR (staging folders aside), by relative path."""
    files = {}
    for name in CONTRACT_FILES:
        path = out / name
        for item in (sorted(path.rglob("*")) if path.is_dir() else [path]):
            if item.is_file():
                files[item.relative_to(out).as_posix()] = item.read_bytes()
    return files


def _entries(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def two_runs(study, tmp_path_factory):
    """The contract files of run A (--dynamic-range 50) and run B (60) of the same clip."""
    sets = {}
    for label, dynamic_range in (("A", "50"), ("B", "60")):
        out = tmp_path_factory.mktemp(f"run{label}")
        result = _run_process(_analyze_argv(study, out, "--dynamic-range", dynamic_range))
        assert result.returncode == 0, result.stderr
        sets[label] = _contract_set(out)
    assert sets["A"]["parameters.csv"] != sets["B"]["parameters.csv"]
    return sets


def _start_paused(argv, step, **env):
    """Start ``analyze`` and return it once it is paused at ``step`` of the commit."""
    process = subprocess.Popen([sys.executable, "-m", "DCEUSResponseLib", *argv], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True, cwd=REPO,
                               env=_env(DCEUS_TEST_PAUSE_AT=step, **env))
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.strip() == f"DCEUS_TEST_PAUSED {step}":
            return process
    process.wait()
    raise AssertionError(f"the run never reached {step}: {''.join(seen)}")


def _finish(process):
    rest = process.stderr.read()
    process.wait(timeout=120)
    return process.returncode, rest


# -- item 14: the commit is all-or-nothing, also under SIGKILL ------------------------------------

@pytest.mark.parametrize("step", ["staged", "committed", "removed-last", "moved:parameters.csv", "moved:tic.csv",
                                  "moved:results.json"])
def test_sigkill_at_each_commit_step_never_mixes_two_runs(study, two_runs, tmp_path, step):
    """Killed at any step, DIR holds run A's set or (results.json absent) an incomplete one that the
    next run finishes as run B's; results.json is never beside CSVs of another run."""
    from DCEUSResponseLib.export.staging import STAGING_PREFIX, recover_output_dir

    out = tmp_path / "out"
    out.mkdir()
    for name, data in two_runs["A"].items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    process = _start_paused(_analyze_argv(study, out, "--dynamic-range", "60"), step)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = _contract_set(out)
    if "results.json" in left:
        assert left in (two_runs["A"], two_runs["B"]), f"mixed set after SIGKILL at {step}"
    assert all(not name.startswith(STAGING_PREFIX) or os.path.isdir(out / name) for name in _entries(out))
    recover_output_dir(str(out))  # what the next run in DIR does first
    expected = two_runs["A"] if step == "staged" else two_runs["B"]
    assert _contract_set(out) == expected
    assert _entries(out) == sorted(CONTRACT_FILES)


@pytest.mark.parametrize("step", ["committed", "removed-last", "moved:results.json"])
def test_sigkill_during_a_commit_that_replaces_dicom_objects_is_finished_by_the_next_run(study, tmp_path, step):
    """A run without --dicom after one with it removes the earlier SR and SEG in its commit (they
    describe the analysis it replaces); killed after the commit point, the journal holds the removals
    too and the next run in DIR finishes them: the old SR is never left beside the new results.json."""
    pytest.importorskip("highdicom")
    from DCEUSResponseLib.export.staging import recover_output_dir

    out = tmp_path / "out"
    first = _run_process(_analyze_argv(study, out, "--dynamic-range", "50", "--dicom"))
    assert first.returncode == 0, first.stderr
    assert sorted(os.listdir(out / "dicom")) == ["SEG_ROIs.dcm", "SR_measurements.dcm"]
    process = _start_paused(_analyze_argv(study, out, "--dynamic-range", "60"), step)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (out / "results.json").exists() and (out / "dicom" / "SR_measurements.dcm").exists():
        assert json.loads((out / "results.json").read_text())["clip"]["dynamic_range_db"] == 50.0
    recover_output_dir(str(out))
    assert json.loads((out / "results.json").read_text())["clip"]["dynamic_range_db"] == 60.0
    assert not (out / "dicom").exists()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_before_the_commit_leave_dir_as_it_was(study, two_runs, tmp_path, signum, code):
    out = tmp_path / "out"
    out.mkdir()
    for name, data in two_runs["A"].items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    process = _start_paused(_analyze_argv(study, out, "--dynamic-range", "60"), "staged")
    process.send_signal(signum)
    returncode, rest = _finish(process)
    assert returncode == code
    assert len(rest.strip().splitlines()) == 1 and "no results were written" in rest
    assert _contract_set(out) == two_runs["A"] and _entries(out) == sorted(CONTRACT_FILES)


def test_sigterm_during_the_commit_waits_for_it(study, two_runs, tmp_path):
    out = tmp_path / "out"
    process = _start_paused(_analyze_argv(study, out, "--dynamic-range", "60"), "committed")
    process.send_signal(signal.SIGTERM)
    returncode, rest = _finish(process)
    assert returncode == 143 and "results were written" in rest
    assert _contract_set(out) == two_runs["B"] and _entries(out) == sorted(CONTRACT_FILES)


def test_stale_staging_folders_are_removed_at_the_start(study, tmp_path):
    from DCEUSResponseLib.export.staging import STAGING_PREFIX

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = out / f"{STAGING_PREFIX}{dead.pid}-abc"
        (stale / "maps").mkdir(parents=True)
        (stale / "maps" / "PE.nrrd").write_bytes(b"x" * 1000)
        legacy = out / f"{STAGING_PREFIX}k2j4h5"  # the old unnamed kind: removed when older than the run
        legacy.mkdir()
        os.utime(legacy, (time.time() - 3600, time.time() - 3600))
        running = out / f"{STAGING_PREFIX}{alive.pid}-def"
        running.mkdir()
        result = _run_process(_analyze_argv(study, out))
        assert result.returncode == 0, result.stderr
        assert _entries(out) == sorted([*CONTRACT_FILES, running.name])
    finally:
        alive.kill()
        alive.wait()


# -- item 15: a failing run leaves no new folder --------------------------------------------------

def test_a_failing_analyze_creates_no_output_folder(study, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    code = main(["analyze", study["clip"], "--roi", f"lesion={study['masks']['lesion']}", "--exclude-frames",
                 "0-39", "--out", str(out)])
    assert code == 1
    assert not (tmp_path / "new").exists()


def test_a_failing_writer_removes_the_folders_it_created(tmp_path):
    from DCEUSResponseLib.export.staging import write_staged

    def fails(path):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_staged(str(tmp_path / "a" / "b"), [("x.txt", lambda p: open(p, "w").close()), ("y.txt", fails)],
                     last="x.txt")
    assert _entries(tmp_path) == []


# -- items 11, 24: paths are checked after resolving links ----------------------------------------

def test_scene_through_a_symbolic_link_is_refused(study, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    code = main(_analyze_argv(study, out, "--scene", "link/x.mrb"))
    stderr = capsys.readouterr().err
    assert code == 1 and "outside --out" in stderr and len(stderr.strip().splitlines()) == 1
    assert _entries(outside) == [] and _entries(out) == ["link"]


def test_fuse_takes_its_scene_path_by_the_same_rule_as_analyze(tmp_path, monkeypatch, capsys):
    """``fuse --scene w/f.mrb --out w`` wrote ``w/w/f.mrb`` (an audit), and a link inside --out could
    lead its scene out of it: both commands take --scene by one rule (links resolved)."""
    from DCEUSResponseLib.errors import InputError
    from DCEUSResponseLib.export.staging import scene_path_inside

    out = tmp_path / "w"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    assert scene_path_inside("w/f.mrb", str(out)) == "f.mrb"  # already inside, seen from here
    assert scene_path_inside("f.mrb", str(out)) == "f.mrb" == scene_path_inside(str(out / "f.mrb"), str(out))
    assert scene_path_inside("sub/f.mrb", str(out)) == os.path.join("sub", "f.mrb")
    for outside in ("../f.mrb", str(tmp_path / "f.mrb")):
        with pytest.raises(InputError, match="outside --out"):
            scene_path_inside(outside, str(out))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    # fuse checks --scene before it reads anything
    code = main(["fuse", str(tmp_path / "no-analysis"), "--ct", str(tmp_path / "no-ct"), "--landmarks", "a=b",
                 "--scene", "link/f.mrb", "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 1 and "outside --out" in stderr and len(stderr.strip().splitlines()) == 1
    assert _entries(elsewhere) == []


def test_output_file_through_a_symbolic_link_folder_is_refused(tmp_path):
    """Every output path, not only --scene: a maps/ folder that links elsewhere is not written through."""
    from DCEUSResponseLib.errors import InputError
    from DCEUSResponseLib.export.staging import write_staged

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "maps").symlink_to(outside, target_is_directory=True)
    (out / "results.json").write_text("old")

    def text(value):
        return lambda path: open(path, "w").write(value)

    with pytest.raises(InputError, match="outside the output folder"):
        write_staged(str(out), [("maps/PE.nrrd", text("new")), ("results.json", text("new"))], last="results.json")
    assert _entries(outside) == [] and (out / "results.json").read_text() == "old"
    assert _entries(out) == ["maps", "results.json"]


def test_errors_name_a_file_and_help_names_videos(study, tmp_path, capsys):
    for extra, named in ((["--frame-rate", "-1"], study["clip"]), (["--exclude-frames", "99"], study["clip"]),
                         (["--scene", "x.txt"], "x.txt")):
        code = main(_analyze_argv(study, tmp_path / "o", *extra))
        stderr = capsys.readouterr().err
        assert code == 1 and f"error: {named}: " in stderr, stderr
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "video" in " ".join(capsys.readouterr().out.split())


# -- items 12, 16, 24, 17: a whole --scene --maps run writes only inside DIR, without identifiers ------

def test_scene_and_maps_write_nothing_outside_dir(study, tmp_path):
    """TMPDIR and HOME are empty folders, watched during the run: nothing appears in them (Slicer's
    bundle scratch and matplotlib's config are inside the staging folder). ``--scene out/exam.mrb``
    from the parent folder is ``out/exam.mrb``. The bundle carries no patient identifiers."""
    pytest.importorskip("slicer")
    pytest.importorskip("matplotlib")
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            for folder in (temp, home):
                for root, dirs, files in os.walk(folder):
                    seen.update(os.path.join(root, name) for name in dirs + files)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = _run_process(["analyze", study["clip"], "--roi", study["masks"]["__segmentation__"], "--reference",
                               "liver", "--maps", "--map-binning", "2", "--scene", "out/exam.mrb", "--out", "out"],
                              cwd=str(tmp_path), TMPDIR=str(temp), HOME=str(home), XDG_CACHE_HOME=None,
                              XDG_CONFIG_HOME=None, MPLCONFIGDIR=None)
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert seen == set()
    out = tmp_path / "out"
    assert _entries(out) == sorted([*CONTRACT_FILES, "exam.mrb", "maps"])
    with zipfile.ZipFile(out / "exam.mrb") as bundle:
        texts = [bundle.read(name) for name in bundle.namelist()]
    for identifier in (PATIENT_ID, PATIENT_NAME, BIRTH_DATE):
        assert not any(identifier.encode() in text for text in texts), identifier
    assert any(b"DICOM.SOPInstanceUID" in text for text in texts)


def test_identifiers_are_opt_in(study, tmp_path, capsys):
    """results.json keeps the linking UIDs; PatientID, name, birth and study date only on request."""
    linking = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"}
    assert main(_analyze_argv(study, tmp_path / "default")) == 0
    uids = json.loads((tmp_path / "default" / "results.json").read_text())["clip"]["uids"]
    assert set(uids) == linking
    for text in _contract_set(tmp_path / "default").values():
        assert PATIENT_ID.encode() not in text and b"Doe" not in text and BIRTH_DATE.encode() not in text
    assert main(_analyze_argv(study, tmp_path / "kept", "--keep-identifiers")) == 0
    uids = json.loads((tmp_path / "kept" / "results.json").read_text())["clip"]["uids"]
    assert set(uids) == linking | {"PatientID", "PatientName", "PatientBirthDate", "StudyDate"}
    assert (uids["PatientID"], uids["PatientName"], uids["PatientBirthDate"]) == (PATIENT_ID, PATIENT_NAME, BIRTH_DATE)
    capsys.readouterr()


# -- item 13: CSV cells are not formulas ----------------------------------------------------------

def test_roi_names_are_not_formulas_in_the_csvs(study, tmp_path, capsys):
    masks = study["masks"]
    # (a name starting with "=" cannot be given as --roi NAME=MASK; segments carry those, below)
    names = ["+1", "-2", "@SUM(A1)", "-1+cmd|' /C calc'!A0"]
    argv = ["analyze", study["clip"], "--no-motion-compensation", "--out", str(tmp_path / "o")]
    for name in names:
        argv[2:2] = [f"--roi={name}={masks['lesion']}"]  # one word: "-2=..." is not an option
    assert main(argv) == 0, capsys.readouterr().err
    rows = list(csv.reader(io.StringIO((tmp_path / "o" / "parameters.csv").read_text())))
    assert sorted(row[0] for row in rows[1:]) == sorted("'" + name for name in names)
    header = next(csv.reader(io.StringIO((tmp_path / "o" / "tic.csv").read_text())))
    for name in names:
        assert f"'{name}_measured" in header and f"'{name}_fitted" in header
    # numbers stay numbers (a negative value is not quoted), the names in results.json stay as given
    assert float(rows[1][rows[0].index("PE")]) > 0
    assert set(json.loads((tmp_path / "o" / "results.json").read_text())["rois"]) == set(names)


def test_segment_names_are_not_formulas_in_the_csvs(study, tmp_path, capsys):
    assert main(["analyze", study["clip"], "--roi", study["hostile_seg"], "--no-motion-compensation",
                 "--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    text = (tmp_path / "o" / "parameters.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert sorted(row[0] for row in rows[1:]) == ["'=HYPERLINK(\"evil.example\",\"y\")", "'@SUM(1)"]
    header = (tmp_path / "o" / "tic.csv").read_text().splitlines()[0]
    assert not any(cell.startswith(("=", "@")) for cell in next(csv.reader(io.StringIO(header))))


# -- item 25: a missing extra is one line naming it -----------------------------------------------

def test_missing_extras_are_named(study, tmp_path):
    """slicer-core (for --scene, study --scenes) and PyAV (for videos) made unimportable as on an install
    without them: one line, exit 1, and no output folder created."""
    video = tmp_path / "clip.avi"
    video.write_bytes(b"\0" * 16)
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text(f"patient,exam,date,clip,rois\nP1,B,2024-01-08,{study['clip']},"
                        f"lesion={study['masks']['lesion']}\n", encoding="utf-8")
    for module, argv, extra in (
            ("slicer", _analyze_argv(study, tmp_path / "o1", "--scene", "x.mrb"), "slicer"),
            ("slicer", ["study", str(manifest), "--scenes", "--out", str(tmp_path / "o3")], "slicer"),
            ("av", ["analyze", str(video), "--roi", f"l={study['masks']['lesion']}", "--out", str(tmp_path / "o2")],
             "video")):
        code = (f"import sys; sys.modules[{module!r}] = None; from DCEUSResponseLib.app.cli import main; "
                f"sys.exit(main({argv!r}))")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                env=_env(), timeout=120)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert f'pip install "DCEUSResponse[{extra}]"' in result.stderr and "internal error" not in result.stderr
        assert time.monotonic() - started < 20
    assert _entries(tmp_path) == ["MANIFEST.csv", "clip.avi"]


def test_the_users_matplotlib_font_list_is_read_not_written(study, tmp_path):
    """A user's matplotlib font list (~/.cache/matplotlib/fontlist-v*.json) is copied into the staging
    scratch, so matplotlib does not scan the system's fonts again; the user's cache is left byte for
    byte and time for time as it was, and nothing else appears in HOME."""
    pytest.importorskip("matplotlib")
    from DCEUSResponseLib.export.staging import _copy_font_list

    home = tmp_path / "home"
    cache = home / ".cache" / "matplotlib"
    cache.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], check=True,
                   env={**os.environ, "MPLCONFIGDIR": str(cache)})
    font_lists = sorted(p.name for p in cache.glob("fontlist-v*.json"))
    assert font_lists, "matplotlib wrote no font list"
    before = {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in home.rglob("*") if p.is_file()}

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _copy_font_list(None, str(home / ".cache"), str(scratch))
    assert sorted(p.name for p in scratch.iterdir()) == font_lists
    assert (scratch / font_lists[0]).read_bytes() == (cache / font_lists[0]).read_bytes()
    _copy_font_list(str(tmp_path / "missing"), None, str(tmp_path))  # no cache: nothing, no error

    result = _run_process(["analyze", study["clip"], "--roi", study["masks"]["__segmentation__"], "--reference",
                           "liver", "--out", "out"], cwd=str(tmp_path), HOME=str(home), XDG_CACHE_HOME=None,
                          XDG_CONFIG_HOME=None, MPLCONFIGDIR=None)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tic.png").is_file()
    after = {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in home.rglob("*") if p.is_file()}
    assert after == before


def test_fit_tic_writes_nothing_outside_dir_and_no_library_notes(tmp_path):
    """``fit-tic`` with matplotlib and an empty HOME: no ~/.config/matplotlib, no font cache in HOME (it
    created both), and matplotlib's "building the font cache" note is not on stderr."""
    pytest.importorskip("matplotlib")
    home = tmp_path / "home"
    home.mkdir()
    times = [0.5 * k for k in range(120)]
    values = [1e-3 + 0.5 * math.exp(-0.5 * ((math.log(max(t - 8.0, 1e-9)) - math.log(10.0)) / 0.5) ** 2)
              / (max(t - 8.0, 1e-9) * 0.5 * math.sqrt(2 * math.pi)) if t > 8.0 else 1e-3 for t in times]
    table = tmp_path / "tic.csv"
    table.write_text("time_s,intensity\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values)))
    result = _run_process(["fit-tic", str(table), "--out", "out"], cwd=str(tmp_path), HOME=str(home),
                          XDG_CACHE_HOME=None, XDG_CONFIG_HOME=None, MPLCONFIGDIR=None)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tic.png").is_file()
    assert sorted(home.rglob("*")) == []
    assert "font cache" not in result.stderr and "Matplotlib" not in result.stderr, result.stderr


def test_a_commit_failing_after_its_commit_point_keeps_its_journal_for_the_next_run(tmp_path, monkeypatch):
    """A failure after the commit point (a move refused) discarded the staging folder, journal and
    all: DIR was left with neither run's results.json. The journal stays and the next staged write
    finishes the commit; a removal that fails (a file held open) is skipped, not fatal."""
    from DCEUSResponseLib.export import staging

    out = tmp_path / "out"
    staging.write_staged(str(out), [("dicom/SR_measurements.dcm", lambda p: open(p, "w").write("old SR")),
                                    ("results.json", lambda p: open(p, "w").write("old"))], last="results.json")
    real_replace, real_unlink = os.replace, os.unlink

    def refuse_results(source, target):
        if os.path.basename(target) == "results.json":
            raise OSError(5, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(staging.os, "replace", refuse_results)
    with pytest.raises(OSError):
        staging.write_staged(str(out), [("results.json", lambda p: open(p, "w").write("new"))], last="results.json",
                             replaces=("dicom/*.dcm",))
    monkeypatch.setattr(staging.os, "replace", real_replace)
    kept = [name for name in os.listdir(out) if name.startswith(staging.STAGING_PREFIX)]
    assert len(kept) == 1 and os.path.isfile(out / kept[0] / staging.JOURNAL)

    def held_open(path, *args, **kwargs):
        if str(path).endswith("SR_measurements.dcm"):
            raise PermissionError(13, "held open")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(staging.os, "unlink", held_open)
    monkeypatch.setattr(staging, "_is_stale", lambda name, path: True)  # as for a process that has ended
    staging.recover_output_dir(str(out))
    assert (out / "results.json").read_text() == "new"
    assert not [name for name in os.listdir(out) if name.startswith(staging.STAGING_PREFIX)]


def test_a_journal_cannot_move_or_remove_files_outside_dir(tmp_path):
    """The journal's paths are relative to DIR: an absolute or '..' path (a damaged or planted
    journal) is not followed, so recovery never removes or replaces a file outside DIR."""
    from DCEUSResponseLib.export import staging

    out = tmp_path / "out"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep", encoding="utf-8")
    planted = out / f"{staging.STAGING_PREFIX}999999999-x"
    planted.mkdir(parents=True)
    (planted / "results.json").write_text("x", encoding="utf-8")
    (planted / staging.JOURNAL).write_text(json.dumps(
        {"order": ["results.json"], "remove": [str(outside), "../precious.txt"]}), encoding="utf-8")
    staging.recover_output_dir(str(out))
    assert outside.read_text(encoding="utf-8") == "keep"
    assert not (out / "results.json").exists() and not planted.exists()
