"""The CEUS plane's registration as a Slicer linear transform node and as ``registration.h5``.

The node's *to-parent* matrix is CEUS -> patient in RAS, F M F with M = ``ceus_to_patient_lps`` and
F = diag(-1, -1, 1, 1): the CEUS nodes placed under it (frame volume at RAS (-c dx, -r dy, 0)) then
stand in the patient as the registration says. The file is written by Slicer's own
``vtkMRMLTransformStorageNode`` (ITK's format, the from-parent transform in LPS), so Slicer and
:func:`DCEUSResponseLib.io.transforms.read_transform` read back the same matrix.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from DCEUSResponseLib.scene.application import have_slicer_core
from DCEUSResponseLib.scene.nodes import add_new_node, numpy_matrix, vtk_matrix
from DCEUSResponseLib.spatial.registration import ras_to_lps_matrix

REGISTRATION_NODE_NAME = "CEUS to patient"


def add_registration_node(scene: Any, ceus_to_patient_lps: np.ndarray, name: str = REGISTRATION_NODE_NAME):
    """A ``vtkMRMLLinearTransformNode`` whose to-parent matrix is the registration in RAS."""
    node = add_new_node(scene, "vtkMRMLLinearTransformNode", name)
    # F M F is the same map written between RAS spaces (F is its own inverse).
    node.SetMatrixTransformToParent(vtk_matrix(ras_to_lps_matrix(ceus_to_patient_lps)))
    return node


def registration_to_parent_ras(node: Any) -> np.ndarray:
    """A linear transform node's to-parent matrix (RAS)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetMatrixTransformToParent(matrix)
    return numpy_matrix(matrix)


def write_transform_file(path: str, ceus_to_patient_lps: np.ndarray) -> None:
    """Write the registration to ``path`` (``.h5``, ``.tfm`` or ``.txt``) through Slicer's transform storage.

    Uses a scene of its own, so the caller's scene is untouched; raises ``OSError`` when Slicer
    reports the write failed (the staged output is then discarded).
    """
    import slicer

    scene = slicer.vtkMRMLScene()
    try:
        node = add_registration_node(scene, ceus_to_patient_lps)
        storage = add_new_node(scene, "vtkMRMLTransformStorageNode", "registration storage")
        storage.SetFileName(os.path.abspath(path))
        if not storage.WriteData(node) or not os.path.isfile(path):
            raise OSError(f"{path}: Slicer's transform storage could not write the registration")
    finally:
        scene.Clear(True)


def registration_file_writer(ceus_to_patient_lps: np.ndarray) -> Callable[[str], None] | None:
    """A writer of the registration as a Slicer transform file (``writer(path)``), or None when
    slicer-core is not installed (the ``slicer`` extra)."""
    if not have_slicer_core():
        return None
    matrix = np.array(ceus_to_patient_lps, dtype=float)
    return lambda path: write_transform_file(path, matrix)
