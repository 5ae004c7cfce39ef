"""Rigid registration of the CEUS plane from landmark pairs, against known poses (analytic truth).

Noise study (seeded, 200 registrations): 8 landmarks spread over a 80 x 65 mm frame, Gaussian
localisation noise of 1 mm per axis on the CT points and 1 mm per in-plane axis on the CEUS points,
a target (lesion centroid) drawn inside the frame. Measured: the target error's 95th percentile is
below 2 mm (measured 1.79 mm, median 0.96 mm); the Fitzpatrick-West-Maurer estimate
``expected_tre_mm`` has a median ratio to the true target error of 1.17 (asserted within 0.67..1.5)
and its RMS over the seeds is 1.08 x the true RMS (asserted within 1.5 x); the contract's
leave-one-out ``tre_loo_rms_mm`` includes each left-out landmark's own noise, so it overestimates the
target error (median ratio 2.7, asserted 2..4.5; larger than the true error in 99 % of the seeds):
a conservative figure, not an estimate of the error at the lesion.
"""
import json

import numpy as np
import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.landmarks import read_landmarks
from DCEUSResponseLib.spatial.registration import (
    Landmarks, apply, check_rigid, is_collinear, pixel_to_frame_mm, register_landmarks, rigid_fit,
    rotation_angle_deg)

FRAME = (600, 800)  # rows, columns
SPACING = (0.1, 0.1)  # dy, dx mm: an 80 x 60 mm frame


def pose(angles_deg=(30.0, -20.0, 60.0), translation=(100.0, -50.0, 200.0)) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    matrix[:3, 3] = translation
    return matrix


def ceus_points(count: int, rng) -> np.ndarray:
    return np.c_[rng.uniform(5, 75, count), rng.uniform(5, 55, count), np.zeros(count)]


def pair(ceus_mm: np.ndarray, patient_mm: np.ndarray, labels=None):
    labels = tuple(labels or (f"P{i}" for i in range(len(ceus_mm))))
    return (Landmarks(labels, np.asarray(ceus_mm, float), "mm", "ceus.csv"),
            Landmarks(labels, np.asarray(patient_mm, float), "mm", "ct.csv"))


def test_exact_landmarks_recover_the_pose_within_half_a_degree_and_half_a_millimetre():
    rng = np.random.default_rng(1)
    for angles in [(30, -20, 60), (180, 0, 0), (0, 179, 45), (-90, 45, -135)]:
        truth = pose(angles, rng.uniform(-200, 200, 3))
        ceus = ceus_points(5, rng)
        registration = register_landmarks(*pair(ceus, apply(truth, ceus)), FRAME, SPACING)
        matrix = registration.ceus_to_patient_lps
        assert rotation_angle_deg(matrix, truth) < 0.5
        corners = pixel_to_frame_mm(np.array([0, 0, 599, 599]), np.array([0, 799, 0, 799]), SPACING)
        assert np.max(np.linalg.norm(apply(matrix, corners) - apply(truth, corners), axis=1)) < 0.5
        assert np.allclose(matrix, truth, atol=1e-9)
        assert np.isclose(np.linalg.det(matrix[:3, :3]), 1.0)
        assert registration.fre_rms_mm < 1e-9 and registration.tre_loo_rms_mm < 1e-9
        assert [p.residual_mm < 1e-9 for p in registration.landmarks] == [True] * 5
        assert registration.method == "landmarks" and registration.warnings == []


def test_pixel_landmarks_are_placed_through_the_frame_spacing():
    truth = pose()
    rows, columns = np.array([100.0, 500.0, 300.0, 50.0]), np.array([80.0, 120.0, 700.0, 400.0])
    ceus_mm = np.c_[columns * 0.2, rows * 0.15, np.zeros(4)]
    ceus = Landmarks(("a", "b", "c", "d"), np.c_[rows, columns], "pixel", "ceus.csv")
    patient = Landmarks(("d", "c", "b", "a"), apply(truth, ceus_mm)[::-1], "mm", "ct.csv")  # order differs
    registration = register_landmarks(ceus, patient, FRAME, (0.15, 0.2))
    assert np.allclose(registration.ceus_to_patient_lps, truth, atol=1e-9)
    assert [p.label for p in registration.landmarks] == ["a", "b", "c", "d"]
    assert np.allclose(registration.landmarks[2].ceus_mm, (140.0, 45.0, 0.0))


def test_rigid_fit_is_a_proper_rotation_even_where_a_reflection_fits_coplanar_points_better():
    ceus = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 0.0]])
    mirrored = ceus * [1, -1, 1]  # the best orthogonal fit is the reflection y -> -y
    matrix = rigid_fit(ceus, mirrored)
    assert np.isclose(np.linalg.det(matrix[:3, :3]), 1.0)
    assert np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3))


def test_three_pairs_give_no_leave_one_out_error_and_a_large_fre_warns():
    rng = np.random.default_rng(2)
    truth, ceus = pose(), ceus_points(3, rng)
    assert register_landmarks(*pair(ceus, apply(truth, ceus)), FRAME, SPACING).tre_loo_rms_mm is None
    ceus = ceus_points(5, rng)
    patient = apply(truth, ceus) + rng.normal(0, 8.0, (5, 3))
    registration = register_landmarks(*pair(ceus, patient), FRAME, SPACING)
    assert registration.fre_rms_mm > 5.0
    assert len(registration.warnings) == 1 and "exceeds 5 mm" in registration.warnings[0]
    residuals = np.array([p.residual_mm for p in registration.landmarks])
    assert np.isclose(registration.fre_rms_mm, np.sqrt(np.mean(residuals ** 2)))


def test_leave_one_out_error_is_the_prediction_error_of_each_left_out_pair():
    rng = np.random.default_rng(3)
    ceus = ceus_points(5, rng)
    patient = apply(pose(), ceus) + rng.normal(0, 1.0, (5, 3))
    registration = register_landmarks(*pair(ceus, patient), FRAME, SPACING)
    errors = []
    for left in range(5):  # by hand, from the fit to the four others
        keep = np.arange(5) != left
        errors.append(np.linalg.norm(apply(rigid_fit(ceus[keep], patient[keep]), ceus[left]) - patient[left]))
    assert registration.tre_loo_rms_mm == pytest.approx(np.sqrt(np.mean(np.square(errors))), rel=1e-12)
    assert registration.tre_loo_rms_mm > registration.fre_rms_mm


def test_with_1_mm_noise_the_target_error_is_within_2_mm_and_the_expected_tre_within_a_factor_2():
    rng = np.random.default_rng(20240601)
    target_errors, expected, loo = [], [], []
    for _ in range(200):
        truth = pose(rng.uniform(-180, 180, 3), rng.uniform(-150, 150, 3))
        ceus = ceus_points(8, rng)
        target = np.array([rng.uniform(15, 65), rng.uniform(15, 45), 0.0])
        patient = apply(truth, ceus) + rng.normal(0, 1.0, (8, 3))
        noisy_ceus = ceus + np.c_[rng.normal(0, 1.0, (8, 2)), np.zeros(8)]
        registration = register_landmarks(*pair(noisy_ceus, patient), FRAME, SPACING)
        target_errors.append(np.linalg.norm(registration.to_patient_mm(target) - apply(truth, target)))
        expected.append(registration.expected_tre_mm(target))
        loo.append(registration.tre_loo_rms_mm)
    target_errors, expected, loo = map(np.array, (target_errors, expected, loo))
    assert np.percentile(target_errors, 95) < 2.0
    assert 0.67 < np.median(expected / target_errors) < 1.5
    rms = np.sqrt(np.mean(target_errors ** 2))
    assert 1 / 1.5 < np.sqrt(np.mean(expected ** 2)) / rms < 1.5
    assert 2.0 < np.median(loo / target_errors) < 4.5  # leave-one-out: conservative (see the module docstring)


def test_bad_landmark_sets_are_one_line_errors_naming_the_file():
    rng = np.random.default_rng(4)
    truth = pose()
    ceus = ceus_points(4, rng)
    patient = apply(truth, ceus)
    with pytest.raises(InputError, match="2 landmark pairs: at least 3"):
        register_landmarks(*pair(ceus[:2], patient[:2]), FRAME, SPACING)
    line = np.c_[np.linspace(10, 70, 4), np.linspace(10, 50, 4) + [0, 0.1, -0.1, 0], np.zeros(4)]
    with pytest.raises(InputError, match="ceus.csv: the CEUS landmarks are collinear"):
        register_landmarks(*pair(line, apply(truth, line)), FRAME, SPACING)
    c, p = pair(ceus, patient, ["a", "b", "a", "d"])
    with pytest.raises(InputError, match="ceus.csv: landmark label 'a' appears twice"):
        register_landmarks(c, p, FRAME, SPACING)
    c, _ = pair(ceus, patient, ["a", "b", "c", "d"])
    _, p = pair(ceus, patient, ["a", "b", "c", "e"])
    with pytest.raises(InputError, match=r"ct.csv: landmark labels \['d'\] have no partner"):
        register_landmarks(c, p, FRAME, SPACING)
    lifted = ceus + [0, 0, 0.5]
    with pytest.raises(InputError, match="'P0' is 0.5 mm off the CEUS frame"):
        register_landmarks(*pair(lifted, patient), FRAME, SPACING)
    outside = ceus.copy()
    outside[1, 0] = 80.0  # column 800 of an 800-column frame
    with pytest.raises(InputError, match="'P1' at pixel .* is outside the 600 x 800 frame"):
        register_landmarks(*pair(outside, patient), FRAME, SPACING)
    c, p = pair(ceus, patient)
    with pytest.raises(InputError, match="patient landmarks must be LPS mm"):
        register_landmarks(c, Landmarks(p.labels, p.points[:, :2], "pixel", "ct.csv"), FRAME, SPACING)


def test_collinearity_threshold_is_five_percent_of_the_first_singular_value():
    base = np.c_[np.linspace(-10, 10, 3), np.zeros(3), np.zeros(3)]
    # orthogonal centred columns: singular values |(-10, 0, 10)| = sqrt(200) and |(h, -2h, h)| = sqrt(6) h,
    # so the threshold is h = 0.05 sqrt(200 / 6) = 0.2887 mm
    for h, expected in ((0.28, True), (0.30, False)):
        points = base + np.c_[np.zeros(3), [h, -2 * h, h], np.zeros(3)]
        s = np.linalg.svd(points - points.mean(0), compute_uv=False)
        assert (s[1] < 0.05 * s[0]) == expected
        assert is_collinear(points) == expected


def _markups(path, labels, points, system):
    document = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                           "Resources/Schema/markups-schema-v1.0.3.json#",
                "markups": [{"type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm",
                             "controlPoints": [{"id": str(i + 1), "label": label, "position": list(map(float, point)),
                                                "positionStatus": "defined"}
                                               for i, (label, point) in enumerate(zip(labels, points))]}]}
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_lps_and_ras_markups_give_the_same_matrix(tmp_path):
    rng = np.random.default_rng(5)
    truth, ceus = pose(), ceus_points(5, rng)
    patient = apply(truth, ceus)
    labels = [f"F-{i}" for i in range(5)]
    flip = np.array([-1.0, -1.0, 1.0])
    matrices = []
    for system, factor in (("LPS", np.ones(3)), ("RAS", flip)):
        ceus_file = _markups(tmp_path / f"ceus_{system}.mrk.json", labels, ceus * factor, system)
        ct_file = _markups(tmp_path / f"ct_{system}.mrk.json", labels, patient * factor, system)
        ceus_points_read, ct_points = read_landmarks(ceus_file, allow_pixels=True), read_landmarks(ct_file)
        assert np.allclose(ct_points.points, patient)
        matrices.append(register_landmarks(ceus_points_read, ct_points, FRAME, SPACING).ceus_to_patient_lps)
    assert np.allclose(matrices[0], truth, atol=1e-9) and np.allclose(matrices[1], matrices[0], atol=1e-12)


def test_csv_landmarks_in_mm_and_pixels(tmp_path):
    (tmp_path / "ceus.csv").write_text("label,row,column\nA,100,200\nB,300,50\nC,500,700\n", encoding="utf-8")
    (tmp_path / "ct.csv").write_text("\ufefflabel,x,y,z\nA,1,2,3\nB,4.5,-6,7\nC,8,9,1e1\n", encoding="utf-8")
    ceus = read_landmarks(tmp_path / "ceus.csv", allow_pixels=True)
    assert ceus.unit == "pixel" and ceus.labels == ("A", "B", "C") and ceus.points.tolist()[1] == [300.0, 50.0]
    ct = read_landmarks(tmp_path / "ct.csv")
    assert ct.unit == "mm" and ct.points.tolist() == [[1, 2, 3], [4.5, -6, 7], [8, 9, 10]]
    with pytest.raises(InputError, match="ceus.csv: patient landmarks must be label,x,y,z"):
        read_landmarks(tmp_path / "ceus.csv")


@pytest.mark.parametrize("text, message", [
    ("name,x,y,z\nA,1,2,3\n", "header 'name,x,y,z' is neither"),
    ("label,x,y,z\nA,1,2\n", "line 2: 3 cells, expected 4"),
    ("label,x,y,z\nA,1,two,3\n", "line 2: coordinates"),
    ("label,x,y,z\nA,1,nan,3\n", "line 2: coordinates must be finite"),
    ("label,x,y,z\n,1,2,3\n", "line 2: empty label"),
    ("label,x,y,z\n", "a header but no points"),
])
def test_bad_csv_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "points.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as caught:
        read_landmarks(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_markups_units_placeholders_and_bad_files(tmp_path):
    path = tmp_path / "p.mrk.json"
    document = {"markups": [{"coordinateSystem": "RAS", "coordinateUnits": "um", "controlPoints": [
        {"label": "a", "position": [1000.0, 2000.0, 3000.0]},
        {"label": "b", "position": [0, 0, 0], "positionStatus": "undefined"}]}]}
    path.write_text(json.dumps(document), encoding="utf-8")
    points = read_landmarks(path)
    assert points.labels == ("a",) and points.points.tolist() == [[-1.0, -2.0, 3.0]]
    for bad, message in (({"markups": []}, "no 'markups' list"),
                         ({"markups": [{"coordinateSystem": "XYZ", "controlPoints": []}]}, "unknown coordinateSystem"),
                         ({"markups": [{"controlPoints": [{"label": "a", "position": [1, 2]}]}]},
                          "no finite 3D position")):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(InputError, match=message):
            read_landmarks(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable markups JSON"):
        read_landmarks(path)
    other = tmp_path / "points.xml"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="landmark files must be"):
        read_landmarks(other)


def test_check_rigid_refuses_scale_shear_and_reflection():
    matrix = pose()
    assert check_rigid(matrix, "t.json") is not None
    for bad, message in ((matrix @ np.diag([1.01, 1, 1, 1]), "not rigid"),
                         (matrix @ np.array([[1, 0.01, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                          "not rigid"),
                         (matrix @ np.diag([1, 1, -1, 1.0]), "reflection"),
                         (np.eye(3), "4 x 4")):
        with pytest.raises(InputError, match=message):
            check_rigid(bad, "t.json")
    check_rigid(matrix @ np.diag([1.0004, 1, 1, 1]), "t.json")  # within 1e-3
