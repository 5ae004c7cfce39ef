"""Registration files: Slicer / ITK transforms (``.h5``, ``.tfm``, ``.txt``) and JSON, as ``ceus_to_patient_lps``.

The file holds the transform as Slicer saves a linear transform node whose *to-parent* matrix is
CEUS -> patient. Slicer's transform storage writes ITK transforms, which store the *from-parent*
(resampling) transform in LPS, so ``ceus_to_patient_lps`` is the inverse of the file's matrix
(Slicer: ``vtkMRMLTransformStorageNode::ReadFromTransformFile`` and ``vtkITKTransformConverter``;
matrix in RAS = F (matrix in LPS) F).

Which reader is used where:

* ``.tfm`` / ``.txt`` (ITK's text format): parsed here, no dependency. ITK's linear transforms map
  x to A (x - c) + c + t (c the FixedParameters' centre); the affine family (``AffineTransform``,
  ``MatrixOffsetTransformBase``, ``Rigid3DTransform``: 9 matrix + 3 translation parameters),
  ``Euler3DTransform``, ``VersorRigid3DTransform`` and ``IdentityTransform`` are understood, alone or
  as the one component of a ``CompositeTransform``. ``test_transforms.py`` checks the parse against
  slicer-core's own reading.
* ``.h5`` (ITK's HDF5 layout): through slicer-core's ``vtkMRMLTransformStorageNode`` (h5py and
  SimpleITK are not dependencies); without slicer-core it is a one-line error naming the extra.
* ``.json``: ``{"ceus_to_patient_lps": [[...4...] x 4]}``.

Every matrix is checked rigid (orthonormal rotation within 1e-3) before it is returned. Read only.
"""
from __future__ import annotations

import json
import os

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.spatial.registration import Registration, check_rigid, ras_to_lps_matrix

_AFFINE_FAMILY = ("AffineTransform", "MatrixOffsetTransformBase", "Rigid3DTransform")


def read_transform(path: str | os.PathLike) -> Registration:
    """The registration held by ``path`` (``.h5``, ``.tfm``, ``.txt`` or ``.json``), checked rigid."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("transform file not found", path)
    lower = path.lower()
    if lower.endswith(".json"):
        matrix = _read_json(path)
    elif lower.endswith((".tfm", ".txt")):
        matrix = np.linalg.inv(_affine_or_error(read_itk_text(path), path))
    elif lower.endswith(".h5"):
        matrix = ras_to_lps_matrix(read_to_parent_ras_with_slicer(path))
    else:
        raise InputError("transform files must be .h5, .tfm, .txt (Slicer / ITK) or .json", path)
    return Registration(check_rigid(matrix, path), "transform", source=path)


def _read_json(path: str) -> np.ndarray:
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a readable JSON file ({error})", path) from None
    if not isinstance(document, dict) or "ceus_to_patient_lps" not in document:
        raise InputError('expected {"ceus_to_patient_lps": 4 x 4 matrix}', path)
    try:
        return np.array(document["ceus_to_patient_lps"], dtype=float)
    except (TypeError, ValueError):
        raise InputError("ceus_to_patient_lps is not a 4 x 4 matrix of numbers", path) from None


def _affine_or_error(matrix: np.ndarray | None, path: str) -> np.ndarray:
    if matrix is None:
        raise InputError("the file holds no transform", path)
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise InputError("the transform's matrix is singular", path)
    return matrix


def read_itk_text(path: str) -> np.ndarray | None:
    """The 4 x 4 LPS matrix (ITK's from-parent sense, as stored) of an ITK text transform file."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = [line.strip() for line in stream if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"not a readable ITK transform file ({error})", path) from None
    if not lines or not lines[0].startswith("#Insight Transform File"):
        raise InputError("not an ITK transform file (no '#Insight Transform File' line)", path)
    transforms: list[dict[str, str]] = []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if line.startswith("#"):
            continue
        if key.strip() == "Transform":
            transforms.append({"type": value.strip()})
        elif transforms and key.strip() in ("Parameters", "FixedParameters"):
            transforms[-1][key.strip()] = value
    if transforms and transforms[0]["type"].startswith("CompositeTransform"):
        transforms = transforms[1:]
    if len(transforms) > 1:
        raise InputError(f"{len(transforms)} transforms in one file: a registration must be one linear transform "
                         "(harden or compose them in Slicer and save again)", path)
    return _linear_matrix(transforms[0], path) if transforms else None


def _numbers(transform: dict[str, str], key: str, path: str) -> np.ndarray:
    try:
        return np.array([float(value) for value in transform.get(key, "").split()], dtype=float)
    except ValueError:
        raise InputError(f"{transform['type']}: {key} are not numbers", path) from None


def _linear_matrix(transform: dict[str, str], path: str) -> np.ndarray:
    """x -> A (x - c) + c + t of one ITK 3D linear transform, as a 4 x 4 matrix."""
    kind = transform["type"]
    name = kind.split("_")[0]
    if name == "IdentityTransform":
        return np.eye(4)
    if not kind.endswith("_3_3"):
        raise InputError(f"transform type {kind!r} is not a 3D transform", path)
    parameters = _numbers(transform, "Parameters", path)
    fixed = _numbers(transform, "FixedParameters", path)
    if name in _AFFINE_FAMILY and parameters.size == 12:
        linear, translation = parameters[:9].reshape(3, 3), parameters[9:]
    elif name == "Euler3DTransform" and parameters.size == 6:
        compute_zyx = fixed.size > 3 and fixed[3] != 0
        linear, translation = _euler_matrix(parameters[:3], compute_zyx), parameters[3:]
    elif name == "VersorRigid3DTransform" and parameters.size == 6:
        linear, translation = _versor_matrix(parameters[:3]), parameters[3:]
    else:
        raise InputError(f"transform type {kind!r} with {parameters.size} parameters is not a linear transform "
                         "this reader understands (affine, rigid, Euler, versor)", path)
    centre = fixed[:3] if fixed.size >= 3 else np.zeros(3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = translation + centre - linear @ centre
    return matrix


def _euler_matrix(angles_rad: np.ndarray, compute_zyx: bool) -> np.ndarray:
    """ITK ``Euler3DTransform``: R = Rz Rx Ry (default) or Rz Ry Rx (ComputeZYX)."""
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx if compute_zyx else rz @ rx @ ry


def _versor_matrix(versor: np.ndarray) -> np.ndarray:
    """ITK ``VersorRigid3DTransform``: the unit quaternion's vector part (x, y, z), w >= 0."""
    x, y, z = versor
    w = np.sqrt(max(0.0, 1.0 - float(versor @ versor)))
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def read_to_parent_ras_with_slicer(path: str) -> np.ndarray:
    """The to-parent RAS matrix of a linear transform file as Slicer reads it (slicer-core)."""
    try:
        import slicer
    except ImportError:
        raise InputError("reading .h5 transforms needs slicer-core (pip install 'DCEUSResponse[slicer]'); "
                         "save the transform as .tfm or .txt instead", path) from None
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    scene = slicer.vtkMRMLScene()
    try:
        node = scene.AddNewNodeByClass("vtkMRMLTransformNode")
        storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
        storage.SetFileName(os.path.abspath(path))
        if not storage.ReadData(node) or node.GetTransformToParent() is None:
            raise InputError("Slicer cannot read a transform from this file", path)
        if not node.IsLinear():
            raise InputError("the transform is not linear (a grid or B-spline transform): a registration "
                             "must be rigid", path)
        matrix = vtkMatrix4x4()
        node.GetMatrixTransformToParent(matrix)
        return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
    finally:
        scene.Clear(True)
