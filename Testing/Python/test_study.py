"""``study`` end to end on a synthetic cohort with known perfusion: 2 patients x 3 exams (B, C2, C4),
P1's baseline injected twice; short single-display clips (96 x 120 pixels, 60 frames at 1 Hz).

Lesion truth (bolus area A relative to baseline, shape unchanged; each exam has its own gain):
P1 lesion1 0.45 / 0.30 (responder at C2 and C4), lesion2 0.95 / 0.85 (non-responder);
P2 lesion1 0.90 / 0.80 (non-responder), lesion2 0.75 / 0.40 (non-responder, then responder).
"""
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.app.progress import ProgressBar, format_duration
from DCEUSResponseLib.synthetic.cohort import build_cohort, relative_change_truth

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLES = ("measurements.csv", "lesions.csv", "response.csv", "repeatability.csv")
FOLLOW_UPS = [(p, lesion, exam) for p in ("P1", "P2") for lesion in ("lesion1", "lesion2") for exam in ("C2", "C4")]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    manifest, clips = build_cohort(str(folder))
    return manifest, clips


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    """The study run once on 2 local processes: (exit status, out folder, stderr, seconds)."""
    out = tmp_path_factory.mktemp("study")
    started = time.monotonic()
    status, stderr = _study([cohort[0], "--out", str(out), "--workers", "2"])
    return status, out, stderr, time.monotonic() - started


def _study(argv):
    """Run ``dceus study ARGV`` in this process; ``(exit status, stderr)``."""
    stderr = io.StringIO()
    previous, sys.stderr = sys.stderr, stderr
    try:
        status = main(["study", *argv])
    finally:
        sys.stderr = previous
    return status, stderr.getvalue()


def _rows(path):
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _study_json(out):
    with open(os.path.join(out, "study.json"), encoding="utf-8") as stream:
        return json.load(stream)


def _results_files(out):
    return sorted(os.path.join(root, "results.json") for root, _, files in os.walk(os.path.join(out, "exams"))
                  if "results.json" in files)


def test_study_recovers_the_truth_and_classifies_every_lesion(first_run, cohort):
    status, out, stderr, _ = first_run
    assert status == 0, stderr
    clips = cohort[1]
    assert len(clips) == 7 and len(_results_files(out)) == 7
    for name in TABLES + ("study.json", "patients/P1/report.html", "patients/P2/report.html"):
        assert os.path.isfile(os.path.join(out, name)), name
    response = {(r["patient"], r["lesion"], r["exam"], r["rule"]): r for r in _rows(os.path.join(out, "response.csv"))}
    for patient, lesion, exam in FOLLOW_UPS:
        truth = relative_change_truth(clips, patient, exam, lesion, "WiWoAUC")
        row = response[(patient, lesion, exam, "relative:WiWoAUC:-40")]
        assert float(row["relative_delta_percent"]) == pytest.approx(truth, abs=5.0), (patient, lesion, exam)
        assert abs(truth + 40) > 10  # the cohort keeps every truth clear of the threshold
        assert row["classification"] == ("responder" if truth <= -40 else "non-responder")
        auc_truth = relative_change_truth(clips, patient, exam, lesion, "AUC", relative=False)
        auc = response[(patient, lesion, exam, "lassau2014-auc")]
        assert float(auc["delta_percent"]) == pytest.approx(auc_truth, abs=5.0)
        if abs(auc_truth + 40) > 5:
            assert auc["classification"] == ("responder" if auc_truth <= -40 else "non-responder")
    # P1's baseline had two injections: lesions.csv counts them, repeatability.csv exists
    lesions = {(r["patient"], r["lesion"], r["exam"]): r for r in _rows(os.path.join(out, "lesions.csv"))}
    assert lesions[("P1", "lesion1", "B")]["n_clips"] == "2" and lesions[("P1", "lesion1", "C2")]["n_clips"] == "1"
    assert lesions[("P1", "lesion1", "C2")]["days_from_baseline"] == "56"
    record = _study_json(out)
    assert [c["status"] for c in record["clips"]] == ["done"] * 7
    assert record["executor"]["kind"] == "local" and record["executor"]["workers"] == 2
    assert record["summary"]["failed"] == 0 and "study.json" in record["outputs"]
    assert [c["folder"] for c in record["clips"]][:2] == [os.path.join("exams", "P1", "B", "1"),
                                                          os.path.join("exams", "P1", "B", "2")]
    assert "progress: 7/7 clips done" in stderr


def test_inputs_record_hashes_every_input(first_run, cohort):
    _, out, _, _ = first_run
    with open(os.path.join(out, "exams", "P1", "B", "2", "inputs.json"), encoding="utf-8") as stream:
        record = json.load(stream)
    assert set(record["inputs"]) == {"clip", "roi:liver", "roi:lesion1", "roi:lesion2"}
    import hashlib
    clip = record["inputs"]["clip"]
    with open(clip["path"], "rb") as stream:
        assert clip["sha256"] == hashlib.sha256(stream.read()).hexdigest()
    assert clip["path"] == os.path.join(os.path.dirname(cohort[0]), "P1_B_2.dcm")
    # the command line is recorded with its paths as roles (so a moved study stays reusable)
    assert record["commands"]["analyze"][:2] == ["analyze", "<clip>"] and "<out>" in record["commands"]["analyze"]
    assert "lesion1=<roi:lesion1>" in record["commands"]["analyze"]


def test_second_run_reuses_every_clip(first_run, cohort):
    status, out, _, _ = first_run
    assert status == 0
    before = {path: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in _results_files(out)}
    with open(os.path.join(out, "response.csv"), "rb") as stream:
        response = stream.read()
    status, stderr = _study([cohort[0], "--out", str(out), "--workers", "2"])
    assert status == 0, stderr
    assert {path: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in _results_files(out)} == before
    assert [c["status"] for c in _study_json(out)["clips"]] == ["reused"] * 7
    assert "7 reused" in stderr
    with open(os.path.join(out, "response.csv"), "rb") as stream:
        assert stream.read() == response


def test_a_damaged_reused_output_is_analysed_again_not_the_end_of_the_study(first_run, cohort, tmp_path):
    """A clip's results.json edited after its run (a NaN) was "reused" (the fingerprint covers the
    inputs) and then stopped the whole study when aggregated, without tables. It runs again."""
    _, first, _, _ = first_run
    out = tmp_path / "study"
    shutil.copytree(first, out)
    damaged = sorted(_results_files(out))[0]
    text = open(damaged, encoding="utf-8").read()
    with open(damaged, "w", encoding="utf-8") as stream:
        stream.write(text.replace('"WiWoAUC": ', '"WiWoAUC": NaN, "was": ', 1))
    status, stderr = _study([cohort[0], "--out", str(out), "--workers", "2"])
    assert status == 0, stderr
    statuses = [c["status"] for c in _study_json(out)["clips"]]
    assert statuses.count("done") == 1 and statuses.count("reused") == 6, statuses
    with open(out / "response.csv", "rb") as rerun, open(first / "response.csv", "rb") as original:
        assert rerun.read() == original.read()


def test_killed_study_resumes_to_the_same_response(first_run, cohort, tmp_path):
    """SIGKILL the study (and its worker) once the first clip is done; the rerun resumes."""
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "DCEUSResponseLib", "study", cohort[0], "--out", str(out),
                                "--workers", "1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=env, start_new_session=True)
    try:
        for line in process.stderr:
            if line.startswith("progress: 1/7"):
                break
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended by itself: the assertions below say how
            pass
        process.wait(timeout=30)
    assert not os.path.exists(out / "study.json")
    finished = len(_results_files(out))
    assert 1 <= finished < 7
    status, stderr = _study([cohort[0], "--out", str(out), "--workers", "2"])
    assert status == 0, stderr
    statuses = [c["status"] for c in _study_json(out)["clips"]]
    assert statuses.count("reused") >= 1 and statuses.count("done") >= 7 - finished
    with open(out / "response.csv", "rb") as resumed, open(first_run[1] / "response.csv", "rb") as uninterrupted:
        assert resumed.read() == uninterrupted.read()


def test_dask_cluster_gives_the_same_outputs(first_run, cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask"
    # One worker process with two threads: two clips at once in one process (the output capture is per thread).
    with distributed.LocalCluster(host="127.0.0.1", n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster:
        status, stderr = _study([cohort[0], "--out", str(out), "--scheduler", cluster.scheduler_address])
    assert status == 0, stderr
    record = _study_json(out)
    assert record["executor"]["kind"] == "dask" and [c["status"] for c in record["clips"]] == ["done"] * 7
    for name in TABLES:
        with open(out / name, "rb") as dask_file, open(first_run[1] / name, "rb") as local_file:
            assert dask_file.read() == local_file.read(), name
    # the clips' warnings were captured per clip, not mixed into the worker's log
    assert all(any("motion" in w for w in c["warnings"]) for c in record["clips"])


def test_unreachable_scheduler_is_one_line_within_the_timeout(cohort, tmp_path):
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    status, stderr = _study([cohort[0], "--out", str(tmp_path / "out"), "--scheduler", f"tcp://127.0.0.1:{port}",
                             "--scheduler-timeout", "2"])
    elapsed = time.monotonic() - started
    assert status == 1 and elapsed < 15
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0] and str(port) in lines[0]


@pytest.mark.parametrize("server", ["silent", "http"])
def test_an_address_that_answers_but_is_no_scheduler_is_one_line_within_the_timeout(cohort, tmp_path, server):
    """Something accepting connections that is not a Dask scheduler (a silent listener, a web server)
    made Dask's Client wait for ever, its timeout not applied (more than 2.5 min against an HTTP
    server), then print a traceback at exit; and the output folder had been created already. The
    run is a child process with its own time limit, so a regression fails instead of hanging."""
    pytest.importorskip("distributed")
    import http.server
    import threading

    if server == "silent":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port, stop = listener.getsockname()[1], listener.close
    else:
        httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]
        def stop():
            httpd.shutdown()
            httpd.server_close()
    out = tmp_path / "out"
    try:
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "study", cohort[0], "--out", str(out),
                              "--scheduler", f"tcp://127.0.0.1:{port}", "--scheduler-timeout", "2"],
                             capture_output=True, text=True, timeout=60, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": REPO})
        elapsed = time.monotonic() - started
    finally:
        stop()
    assert run.returncode == 1 and elapsed < 30, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer as a Dask scheduler" in lines[0] and str(port) in lines[0], run.stderr
    assert not out.exists()


def test_the_scheduler_probe_uses_dasks_tls_configuration():
    """The probe connected without the TLS arguments Client takes from Dask's configuration, so every
    tls:// scheduler was "unreachable" (TypeError: TLS expects a ssl_context argument)."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("cryptography")  # Security.temporary's self-signed certificates
    import dask
    from distributed.security import Security

    from DCEUSResponseLib.longitudinal.executors import check_scheduler

    security = Security.temporary()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://",
                                  host="127.0.0.1", security=security, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with dask.config.set({"distributed.comm.tls.ca-file": security.tls_ca_file,
                              "distributed.comm.tls.client.cert": security.tls_client_cert,
                              "distributed.comm.tls.client.key": security.tls_client_key}):
            check_scheduler(cluster.scheduler_address, 10)  # no InputError


def test_manifest_error_exits_1_with_the_manifests_line(tmp_path):
    manifest = tmp_path / "MANIFEST.csv"
    (tmp_path / "clip.dcm").write_bytes(b"")
    (tmp_path / "mask.png").write_bytes(b"")
    manifest.write_text("patient,exam,date,clip,rois\nP1,B,2024-13-01,clip.dcm,lesion=mask.png\n", encoding="utf-8")
    status, stderr = _study([str(manifest), "--out", str(tmp_path / "out")])
    lines = stderr.strip().splitlines()
    assert status == 1 and len(lines) == 1
    assert lines[0] == f"dceus study: error: {manifest}: line 2, column 'date': '2024-13-01' is not an ISO 8601 date " \
                       "(YYYY-MM-DD)"
    assert not os.path.exists(tmp_path / "out")


def test_a_failing_clip_is_reported_and_the_rest_go_on(cohort, tmp_path):
    """A corrupt clip and a row with a CT fail with their one line; the good clip is analysed, with maps."""
    folder = os.path.dirname(cohort[0])
    (tmp_path / "broken.dcm").write_bytes(b"not a DICOM file")
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct_to_ceus.json").write_text('{"ceus_to_patient_lps": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}')
    good = next(line for line in open(cohort[0], encoding="utf-8") if line.startswith("P1,B,"))
    cells = good.strip().split(",")
    entries = (entry.split("=") for entry in cells[4].split(";"))
    rois = ";".join(f"{name}={os.path.join(folder, mask)}" for name, mask in entries)
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text("patient,exam,date,clip,rois,reference,dynamic_range_db,injection_time_s,ct,transform\n"
                        f"P1,B,2024-01-08,{os.path.join(folder, cells[3])},{rois},liver,50,2,,\n"
                        f"P1,C2,2024-03-04,broken.dcm,{rois},liver,50,2,,\n"
                        f"P1,C4,2024-04-29,{os.path.join(folder, 'P1_C4_1.dcm')},{rois},liver,50,2,"
                        "ct,ct_to_ceus.json\n",
                        encoding="utf-8")
    out = tmp_path / "out"
    status, stderr = _study([str(manifest), "--out", str(out), "--workers", "2", "--maps"])
    assert status == 1
    clips = {c["exam"]: c for c in _study_json(out)["clips"]}
    assert clips["B"]["status"] == "done" and clips["B"]["error"] is None
    assert clips["C2"]["status"] == "failed" and clips["C2"]["error"].startswith("dceus analyze: error: ")
    assert "broken.dcm" in clips["C2"]["error"] and "\n" not in clips["C2"]["error"]
    assert clips["C4"]["status"] == "failed" and clips["C4"]["error"].startswith("dceus fuse")
    failures = [line for line in stderr.splitlines() if " failed: " in line]
    assert len(failures) == 2 and failures[0].startswith("dceus study: line ")
    # a failed clip leaves no results that a rerun or the tables could take for its own
    assert not os.path.exists(out / "exams" / "P1" / "C2" / "1" / "results.json")
    assert not os.path.exists(out / "exams" / "P1" / "C4" / "1" / "inputs.json")
    response = _rows(out / "response.csv")
    assert {r["classification"] for r in response if r["exam"] == "C2"} == {"not-evaluable"}
    report = (out / "patients" / "P1" / "report.html").read_text(encoding="utf-8")
    assert (out / "patients" / "P1" / "PE_B_1.png").is_file() and "PE map, injection 1" in report
    assert "broken.dcm" in report  # the failed clip is named in the report's exam table


def test_report_is_self_contained_and_shows_each_lesion(first_run):
    from PIL import Image

    _, out, _, _ = first_run
    folder = out / "patients" / "P1"
    page = (folder / "report.html").read_text(encoding="utf-8")
    sources = [part.split('"', 1)[0] for part in page.split('src="')[1:]]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    for lesion in ("lesion1", "lesion2", "liver"):
        assert f"<h2>{lesion}" in page
        for kind in ("trajectory", "tic"):
            with Image.open(folder / f"{kind}_{lesion}.png") as image:
                assert image.format == "PNG" and image.size[0] > 300
    assert page.count('<tr class="responder">') == 4  # lesion1 at C2 and C4 under both default rules
    assert "exploratory" in page


def test_report_trajectories_are_the_lesion_table(first_run):
    from DCEUSResponseLib.export.report import lesion_trajectories
    from DCEUSResponseLib.longitudinal.aggregate import aggregate, read_clip_outputs
    from DCEUSResponseLib.longitudinal.manifest import read_manifest

    _, out, _, _ = first_run
    manifest = read_manifest(_study_json(out)["manifest"]["path"])
    tables = aggregate(manifest, *read_clip_outputs(manifest, str(out)))
    pairs = lesion_trajectories(tables, "P1", "lesion1")
    assert [p[0].title for p in pairs] == ["WiWoAUC", "PE", "AUC"]
    lesions = {r["exam"]: r for r in _rows(out / "lesions.csv") if (r["patient"], r["lesion"]) == ("P1", "lesion1")}
    absolute, relative = pairs[0]
    assert [d for d, _ in absolute.means] == [0, 56, 112]
    assert [v for _, v in absolute.means] == [float(lesions[e]["WiWoAUC"]) for e in ("B", "C2", "C4")]
    assert [v for _, v in relative.means] == [float(lesions[e]["rel_WiWoAUC"]) for e in ("B", "C2", "C4")]
    assert len(absolute.clips) == 4  # two baseline injections, one clip at C2 and C4
    assert lesion_trajectories(tables, "P1", "liver")[0][1] is None  # the reference is 1 by definition


def test_progress_lines_and_time_left():
    stream = io.StringIO()
    now = [0.0]
    bar = ProgressBar(4, parallel=2, stream=stream, clock=lambda: now[0])
    bar.update(ok=True, reused=True)
    now[0] = 10.0
    bar.update(ok=True)   # 10 s of wall time on 2 workers for 1 clip that ran: 20 s per clip
    now[0] = 10.0
    bar.update(ok=False)  # the second parallel clip finished at the same time
    lines = stream.getvalue().splitlines()
    assert lines[0] == "progress: 1/4 clips done (1 reused), time left unknown"
    assert lines[1] == "progress: 2/4 clips done (1 reused), time left 20 s"
    assert lines[2] == "progress: 3/4 clips done (1 reused, 1 failed), time left 10 s"
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"


def test_fingerprint_follows_content_and_options_not_places(tmp_path):
    from DCEUSResponseLib.longitudinal.study import ClipTask, fingerprint, hash_path

    def task(root, options=()):
        clip, mask = root / "clip", root / "mask.png"
        return ClipTask(("P", "B", 1), 2, str(root / "out"), "exams/P/B/1",
                        ("analyze", str(clip), "--roi", f"lesion={mask}", *options, "--out", str(root / "out")), None,
                        (("clip", str(clip)), ("roi:lesion", str(mask))))

    def digest(t):
        return fingerprint(t, {role: hash_path(path) for role, path in t.inputs})[0]

    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "clip").mkdir(parents=True)  # a clip given as a folder of single-frame files
        (root / "clip" / "1.dcm").write_bytes(b"frame one")
        (root / "clip" / "2.dcm").write_bytes(b"frame two")
        (root / "mask.png").write_bytes(b"mask")
    a, b = task(tmp_path / "a"), task(tmp_path / "b")
    assert digest(a) == digest(b)  # same content, other place
    assert digest(task(tmp_path / "a", ("--model", "gamma"))) != digest(a)
    (tmp_path / "b" / "clip" / "2.dcm").rename(tmp_path / "b" / "clip" / "3.dcm")
    assert digest(b) != digest(a)  # a renamed frame file changes the folder's hash
    import hashlib
    assert hash_path(str(tmp_path / "a" / "mask.png")) == {"sha256": hashlib.sha256(b"mask").hexdigest(), "bytes": 4,
                                                           "files": 1}


_THREAD_PROBE = '''
import os
import sys
import numpy  # a main module that imports numpy at the top, as scripts and the benchmark do


def threads(_):
    import numpy as np

    a = np.random.default_rng(0).random((400, 400))
    a @ a  # starts OpenBLAS's threads, if it has any
    return len(os.listdir("/proc/self/task"))


def blas_limit(_):
    return os.environ.get("OPENBLAS_NUM_THREADS")


if __name__ == "__main__":
    from DCEUSResponseLib.longitudinal.executors import run_local

    import multiprocessing

    counts = run_local(threads, [0, 1, 2], 2, lambda i, r: None, lambda i, m: m)
    # The caller's environment is restored, and no process the study started lingers to hand its
    # limits to the caller's later children (a forkserver would).
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        later = pool.apply(blas_limit, (0,))
    print(counts, os.environ.get("OPENBLAS_NUM_THREADS"), later)
'''


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc")
def test_local_workers_run_their_numerical_libraries_on_one_thread(tmp_path):
    """Each local worker is one thread even when the caller's main module imported numpy first (the
    worker re-imports it before any initializer: OpenBLAS then started a thread per core in every
    worker, two workers on two cores ran four threads, and the 2-worker speed-up was 1.43 x); the
    caller's environment and its later child processes keep no limits."""
    script = tmp_path / "probe_main.py"
    script.write_text(_THREAD_PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DCEUS_THREADS"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[1, 1, 1] None None"


def test_scenes_option_adds_one_scene_per_clip_to_the_commands(tmp_path):
    """``--scenes``: an analysed-only row's analyze writes ``scene.mrb`` into its folder; a fused row's
    analyze writes none and its fuse writes ``fused.mrb`` (which holds the analysis scene too) into
    ``fusion/``, so the Follow-up section opens one scene per clip; without it the commands are unchanged."""
    import datetime

    from DCEUSResponseLib.longitudinal.manifest import Manifest
    from DCEUSResponseLib.longitudinal.records import ClipRow
    from DCEUSResponseLib.longitudinal.study import StudyOptions, plan_tasks

    common = dict(date=datetime.date(2024, 1, 8), injection=1, clip_text="c.dcm", roi_specs=("liver=l.png",),
                  roi_names=("liver",))
    rows = (ClipRow(line=2, patient="P1", exam="B", clip="/d/c.dcm", **common),
            ClipRow(line=3, patient="P1", exam="C2", clip="/d/d.dcm", ct="/d/ct", pet="/d/pet",
                    landmarks=("/d/a.csv", "/d/b.csv"), **common))
    manifest = Manifest(path=str(tmp_path / "MANIFEST.csv"), rows=rows, exams=())
    plain, with_scenes = (plan_tasks(manifest, str(tmp_path / "out"), StudyOptions(scenes=flag)) for flag in (0, 1))
    assert all("--scene" not in t.analyze_argv and "--scene" not in (t.fuse_argv or ()) for t in plain)
    analysed, fused = with_scenes
    assert analysed.analyze_argv[-4:] == ("--scene", "scene.mrb", "--out", analysed.folder)
    assert analysed.fuse_argv is None
    assert "--scene" not in fused.analyze_argv
    assert fused.fuse_argv[-4:] == ("--scene", "fused.mrb", "--out", os.path.join(fused.folder, "fusion"))
    assert plain[1].fuse_argv == fused.fuse_argv[:-4] + fused.fuse_argv[-2:]


@pytest.mark.slicer
def test_study_scenes_are_what_the_follow_up_section_opens(tmp_path):
    """A 2-clip study with ``--scenes`` writes each clip's bundle; the Follow-up room finds one per exam."""
    from DCEUSResponseLib.scene.follow_up import read_study_folder

    manifest, _ = build_cohort(str(tmp_path / "cohort"), n_patients=1, n_exams=2, repeated=(), n_frames=30)
    out = tmp_path / "study"
    status, stderr = _study([manifest, "--out", str(out), "--workers", "1", "--scenes"])
    assert status == 0, stderr
    study = read_study_folder(str(out))
    for exam in ("B", "C2"):
        scenes = study.exam_scenes("P1", exam)
        assert [os.path.relpath(p, out) for p in scenes] == [os.path.join("exams", "P1", exam, "1", "scene.mrb")]
        assert os.path.getsize(scenes[0]) > 10_000
