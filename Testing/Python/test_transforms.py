"""Registration files: JSON and ITK text parsed here, ``.h5`` and the round trip through slicer-core's
transform storage (Slicer writes, Slicer and this reader read back the same matrix)."""
import json

import numpy as np
import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.transforms import read_itk_text, read_transform
from DCEUSResponseLib.spatial.registration import LPS_FROM_RAS, ras_to_lps_matrix

F = LPS_FROM_RAS


def pose() -> np.ndarray:
    angle_z, angle_x = np.radians(35.0), np.radians(-60.0)
    rz = np.array([[np.cos(angle_z), -np.sin(angle_z), 0], [np.sin(angle_z), np.cos(angle_z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(angle_x), -np.sin(angle_x)], [0, np.sin(angle_x), np.cos(angle_x)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ rx
    matrix[:3, 3] = [-120.5, 64.25, 310.0]
    return matrix


def itk_text(path, kind, parameters, fixed="0 0 0", composite=False):
    lines = ["#Insight Transform File V1.0"]
    if composite:
        lines += ["#Transform 0", "Transform: CompositeTransform_double_3_3"]
    lines += [f"#Transform {int(composite)}", f"Transform: {kind}", f"Parameters: {parameters}",
              f"FixedParameters: {fixed}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_json_transform(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"ceus_to_patient_lps": pose().tolist()}), encoding="utf-8")
    registration = read_transform(path)
    assert registration.method == "transform" and np.array_equal(registration.ceus_to_patient_lps, pose())
    assert registration.fre_rms_mm is None and registration.landmarks == []
    path.write_text(json.dumps({"matrix": pose().tolist()}), encoding="utf-8")
    with pytest.raises(InputError, match="expected"):
        read_transform(path)
    path.write_text(json.dumps({"ceus_to_patient_lps": (pose() @ np.diag([1, 1.05, 1, 1])).tolist()}))
    with pytest.raises(InputError, match=r"t.json: the transform is not rigid \(scale or shear"):
        read_transform(path)


def test_itk_text_is_the_inverse_from_parent_transform_with_its_centre(tmp_path):
    # ITK maps x to A (x - c) + c + t; hand-built: the from-parent transform of pose().
    inverse = np.linalg.inv(pose())
    centre = np.array([5.0, -7.0, 11.0])
    translation = inverse[:3, 3] - centre + inverse[:3, :3] @ centre
    parameters = " ".join(repr(float(v)) for v in [*inverse[:3, :3].ravel(), *translation])
    fixed = " ".join(repr(float(v)) for v in centre)
    for kind, composite in (("AffineTransform_double_3_3", False), ("MatrixOffsetTransformBase_double_3_3", False),
                            ("AffineTransform_float_3_3", True)):
        path = itk_text(tmp_path / "t.tfm", kind, parameters, fixed, composite)
        assert np.allclose(read_transform(path).ceus_to_patient_lps, pose(), atol=1e-9)
    translation_only = itk_text(tmp_path / "shift.txt", "AffineTransform_double_3_3", "1 0 0 0 1 0 0 0 1 3 -4 5")
    expected = np.eye(4)
    expected[:3, 3] = [-3, 4, -5]
    assert np.array_equal(read_transform(translation_only).ceus_to_patient_lps, expected)


@pytest.mark.parametrize("parameters, message", [
    ("1.1 0 0 0 1 0 0 0 1 0 0 0", "not rigid"),
    ("1 0.2 0 0 1 0 0 0 1 0 0 0", "not rigid"),
    ("-1 0 0 0 1 0 0 0 1 0 0 0", "reflection"),
    ("0 0 0 0 0 0 0 0 0 0 0 0", "singular"),
    ("1 0 0 0 1 0", "with 6 parameters is not a linear transform"),
])
def test_non_rigid_or_unreadable_text_transforms_are_one_line_errors(tmp_path, parameters, message):
    path = itk_text(tmp_path / "bad.tfm", "AffineTransform_double_3_3", parameters)
    with pytest.raises(InputError, match=message) as caught:
        read_transform(path)
    assert str(caught.value).startswith(path) and "\n" not in str(caught.value)


def test_other_bad_transform_files(tmp_path):
    two = tmp_path / "two.tfm"
    two.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
                   "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n#Transform 1\n"
                   "Transform: AffineTransform_double_3_3\nParameters: 1 0 0 0 1 0 0 0 1 0 0 0\n"
                   "FixedParameters: 0 0 0\n", encoding="utf-8")
    with pytest.raises(InputError, match="2 transforms in one file"):
        read_transform(two)
    (tmp_path / "x.tfm").write_text("hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="not an ITK transform file"):
        read_transform(tmp_path / "x.tfm")
    bspline = itk_text(tmp_path / "b.tfm", "BSplineTransform_double_3_3", "0 0 0")
    with pytest.raises(InputError, match="is not a linear transform"):
        read_transform(bspline)
    (tmp_path / "t.mat").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="must be .h5, .tfm, .txt"):
        read_transform(tmp_path / "t.mat")
    with pytest.raises(InputError, match="transform file not found"):
        read_transform(tmp_path / "missing.h5")


# --- with slicer-core: Slicer writes, Slicer and this reader read back -------------------------------


@pytest.fixture(scope="module")
def slicer_modules():
    pytest.importorskip("slicer")
    from DCEUSResponseLib.io.transforms import read_to_parent_ras_with_slicer
    from DCEUSResponseLib.scene.transforms import write_transform_file
    return write_transform_file, read_to_parent_ras_with_slicer


@pytest.mark.parametrize("extension", ["h5", "tfm", "txt"])
def test_registration_file_round_trips_through_slicer(tmp_path, slicer_modules, extension):
    write_transform_file, read_with_slicer = slicer_modules
    path = str(tmp_path / f"registration.{extension}")
    write_transform_file(path, pose())
    to_parent_ras = read_with_slicer(path)  # what Slicer's transform node holds after loading the file
    assert np.allclose(to_parent_ras, F @ pose() @ F, atol=1e-12)
    assert np.allclose(read_transform(path).ceus_to_patient_lps, pose(), atol=1e-12)
    if extension != "h5":  # the text parse, independently of Slicer: the from-parent LPS matrix is stored
        assert np.allclose(read_itk_text(path), np.linalg.inv(pose()), atol=1e-12)


def test_the_transform_node_maps_ceus_points_into_the_patient_as_the_registration_says(slicer_modules):
    from DCEUSResponseLib.scene.application import create_headless_application
    from DCEUSResponseLib.scene.transforms import add_registration_node, registration_to_parent_ras

    frame_point_lps = np.array([12.5, 30.0, 0.0])
    with create_headless_application() as application:
        node = add_registration_node(application.scene, pose())
        ras = [0.0, 0.0, 0.0]
        node.GetTransformToParent().TransformPoint(list(frame_point_lps * [-1, -1, 1]), ras)
        assert np.allclose(np.array(ras) * [-1, -1, 1], pose()[:3, :3] @ frame_point_lps + pose()[:3, 3])
        assert np.allclose(ras_to_lps_matrix(registration_to_parent_ras(node)), pose())


@pytest.mark.parametrize("kind, parameters, fixed", [
    ("Euler3DTransform_double_3_3", "0.3 -0.2 0.5 10 20 30", "1 2 3 0"),
    ("Euler3DTransform_double_3_3", "0.3 -0.2 0.5 10 20 30", "1 2 3 1"),
    ("VersorRigid3DTransform_double_3_3", "0.1 0.2 -0.3 10 20 30", "4 5 6"),
    ("AffineTransform_double_3_3", "1 0 0 0 1 0 0 0 1 3 -4 5", "7 8 9"),
])
def test_text_parse_equals_slicers_reading(tmp_path, slicer_modules, kind, parameters, fixed):
    _, read_with_slicer = slicer_modules
    path = itk_text(tmp_path / "t.tfm", kind, parameters, fixed)
    assert np.allclose(read_transform(path).ceus_to_patient_lps, ras_to_lps_matrix(read_with_slicer(path)),
                       atol=1e-12)


def test_non_rigid_h5_is_a_one_line_error(tmp_path, slicer_modules):
    write_transform_file, _ = slicer_modules
    path = str(tmp_path / "scaled.h5")
    write_transform_file(path, pose() @ np.diag([1.0, 1.0, 1.2, 1.0]))
    with pytest.raises(InputError, match="scaled.h5: the transform is not rigid"):
        read_transform(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="junk.h5: Slicer cannot read a transform"):
        read_transform(tmp_path / "junk.h5")
