"""The Slicer module's PET/CT section, Qt-free: the CT and PET a user loaded, the landmark pairs placed with
Markups, the registration applied to the CEUS nodes, and the engine's ``fuse`` measures in the scene.

The DICOM files behind the CT and PET nodes: :mod:`DCEUSResponseLib.scene.volume_sources`.

Coordinates are the contract's (``docs/fusion-and-follow-up-contract.md``). CEUS nodes lie in the CEUS
frame's RAS: full-frame pixel (r, c) at RAS (-c dx, -r dy, 0) (:mod:`DCEUSResponseLib.scene.clip_nodes`),
so a CEUS control point's *local* position (the point list's own coordinates: Markups stores a point
placed in a view through the list's parent transform) is the frame point F p, F = diag(-1, -1, 1). The
CEUS point list therefore goes wherever the CEUS nodes go: untransformed before Register, under the
registration after it (:func:`place_ceus_nodes`). Patient points are world RAS (the CT as Slicer's DICOM
browser loads it, untransformed), i.e. LPS F p.

SUV (:func:`pet_suv`): the engine's rules (:mod:`DCEUSResponseLib.pet.suv`) on the series' headers. A PET
node that PETDICOMExtension's plugins loaded is already SUVbw: ``DICOMRWVMPlugin.loadPetSeries`` multiplies
the image by the Real World Value Mapping's slope and sets the node's voxel value units to the RWVM's
``({SUVbw}g/ml, UCUM)`` and the attribute ``DICOM.RWV.instanceUID``; such a node (or one made here, marked
the same way) is never multiplied again, and the factor it carries (its voxel sum over the series'
Bq/ml sum, independent of slice order) is compared with the engine's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.fusion.inputs import PANEL_BMODE, PANEL_CONTRAST, AnalysisInputs
from DCEUSResponseLib.fusion.pipeline import panel_shift_px
from DCEUSResponseLib.pet.lesion import roi_centroid_frame_mm
from DCEUSResponseLib.pet.suv import SuvFactor
from DCEUSResponseLib.scene.fusion_nodes import PET_COLOUR_NODE_ID
from DCEUSResponseLib.scene.nodes import add_new_node, vtk_matrix
from DCEUSResponseLib.scene.tables import add_double_column, add_int_column, add_string_column
from DCEUSResponseLib.scene.transforms import REGISTRATION_NODE_NAME
from DCEUSResponseLib.spatial.registration import Landmarks, Registration, ras_to_lps_matrix, register_landmarks

RWV_ATTRIBUTE = "DICOM.RWV.instanceUID"  # PETDICOMExtension DICOMRWVMPlugin.loadPetSeries
SUV_FACTOR_ATTRIBUTE = "DCEUS.SuvFactor"  # on the SUV nodes made here: the factor applied
SUV_NODE_REFERENCE = "DCEUS.SuvVolume"  # from a Bq/ml PET node to the SUVbw node made of it
SUVBW_UNITS = ("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")  # SUVFactorCalculator's RWVM code
SUV_QUANTITY = ("126400", "DCM", "Standardized Uptake Value")
OTHER_SUV_UNITS = ("{SUVlbm}g/ml", "{SUVibw}g/ml", "{SUVbsa}cm2/ml")
FACTOR_AGREEMENT = 1e-3  # two SUV factors of one series differing by more than 0.1 % are reported
# A pair is flagged when its residual exceeds FLAG_RATIO x the RMS residual of the *other* pairs and the
# floor (mm). The FRE itself includes the wrong pair, whose error the rigid fit spreads over the others
# (a corner point's leverage): with the demo's 6 pairs and 1 mm noise per axis, "residual > 2 x FRE"
# flagged an 8 mm mistake in 28 % of 200 seeds, this rule in 63 % (10 mm: 41 % / 75 %), flagging a
# correct set in 2 % (300 seeds; docs/NOTES.md). Below a millimetre an error is the CT's voxel, not a click.
FLAG_RATIO, FLAG_FLOOR_MM = 2.5, 1.0
FLAG_COLOUR = (1.0, 0.15, 0.15)
_F = np.array([-1.0, -1.0, 1.0])


# ------------------------------------------------------------------------------------------------
# SUV, consistent with PETDICOMExtension


@dataclass(frozen=True)
class PetSuv:
    """The engine's SUVbw factor of a PET node's series and what the node already holds.

    ``node_is_suv``: the node's values are SUVbw already (marked by PETDICOMExtension or by
    :func:`suv_volume_node`); ``marked_by`` says how; ``node_factor`` is the factor between the node's
    values and the series' stored units (voxel sums; None when the grids differ); ``warnings`` one
    line each (factors differing by more than 0.1 %, a node in other units).
    """

    factor: SuvFactor
    node_is_suv: bool
    marked_by: str | None
    node_factor: float | None
    warnings: list[str] = field(default_factory=list)


def _units_code(volume_node: Any) -> str:
    units = volume_node.GetVoxelValueUnits() if hasattr(volume_node, "GetVoxelValueUnits") else None
    return (units.GetCodeValue() or "") if units is not None else ""


def _node_values(volume_node: Any) -> np.ndarray:
    from vtkmodules.util import numpy_support

    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume {volume_node.GetName()!r} has no image data")
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())


def pet_suv(pet_node: Any, volume: Any, factor: SuvFactor) -> PetSuv:
    """Compare the PET node's values with the series ``volume`` (the engine's read of its files) and the
    engine's SUVbw ``factor`` of it (:func:`DCEUSResponseLib.pet.suv.suv_factor_of`)."""
    name = pet_node.GetName()
    code = _units_code(pet_node)
    marked_by = None
    if pet_node.GetAttribute(SUV_FACTOR_ATTRIBUTE):
        marked_by = "DCEUSResponse"
    elif code == SUVBW_UNITS[0] or pet_node.GetAttribute(RWV_ATTRIBUTE):
        marked_by = "PETDICOMExtension"
    warnings = []
    if code in OTHER_SUV_UNITS:
        warnings.append(f"PET volume {name!r} holds {code}, not SUVbw: the measures use the engine's SUVbw "
                        "from the series' headers")
    values = _node_values(pet_node)
    node_factor = None
    if values.size == volume.values.size:
        stored_sum = float(np.sum(volume.values, dtype=np.float64))
        if stored_sum != 0.0:
            node_factor = float(np.sum(values, dtype=np.float64)) / stored_sum
    expected = factor.factor if marked_by else 1.0
    if node_factor is not None and abs(node_factor / expected - 1.0) > FACTOR_AGREEMENT:
        if marked_by:
            warnings.append(f"PET volume {name!r} was converted to SUVbw by {marked_by} with a factor "
                            f"{node_factor:.6g}; the engine's is {factor.factor:.6g} "
                            f"({100 * (node_factor / factor.factor - 1):+.2f} %): the measures use the engine's")
        else:
            warnings.append(f"PET volume {name!r} is not in the series' {factor.units} (its values are "
                            f"{node_factor:.6g} x the stored ones): the measures use the series' files")
    return PetSuv(factor, marked_by is not None, marked_by, node_factor, warnings)


def suv_volume_node(scene: Any, pet_node: Any, suv: PetSuv):
    """The PET node to show in SUVbw: the node itself when it is SUVbw already, else a scalar volume
    ``"<name> SUVbw"`` on the node's grid (values x the engine's factor), marked so that it is
    recognised as SUVbw (:func:`pet_suv`) and never multiplied again. The PET node references it
    (``SUV_NODE_REFERENCE``): a second Measure refills that node instead of adding another."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    if suv.node_is_suv:
        return pet_node
    import slicer

    values = np.multiply(_node_values(pet_node), suv.factor.factor, dtype=np.float32)
    node = pet_node.GetNodeReference(SUV_NODE_REFERENCE)
    if node is None or scene.GetNodeByID(node.GetID()) is None:
        node = add_new_node(scene, "vtkMRMLScalarVolumeNode", f"{pet_node.GetName()} SUVbw")
        pet_node.SetNodeReferenceID(SUV_NODE_REFERENCE, node.GetID())
    matrix = vtkMatrix4x4()
    pet_node.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    image = vtkImageData()
    image.SetDimensions(pet_node.GetImageData().GetDimensions())
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values, deep=True))
    node.SetAndObserveImageData(image)
    node.SetAndObserveTransformNodeID(pet_node.GetTransformNodeID())
    for setter, code in (("SetVoxelValueUnits", SUVBW_UNITS), ("SetVoxelValueQuantity", SUV_QUANTITY)):
        entry = slicer.vtkCodedEntry()
        entry.SetValueSchemeMeaning(*code)
        getattr(node, setter)(entry)
    node.SetAttribute(SUV_FACTOR_ATTRIBUTE, repr(float(suv.factor.factor)))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if scene.GetNodeByID(PET_COLOUR_NODE_ID) is not None:
        node.GetDisplayNode().SetAndObserveColorNodeID(PET_COLOUR_NODE_ID)
    return node


# ------------------------------------------------------------------------------------------------
# landmarks from Markups point lists


def point_list_landmarks(point_list: Any, ceus: bool) -> Landmarks:
    """The defined control points of a ``vtkMRMLMarkupsFiducialNode`` as engine landmarks (mm, by label).

    ``ceus``: the list's local positions are CEUS frame RAS (see the module), returned as frame mm;
    otherwise the world positions are patient RAS, returned as LPS. A point without a label is an
    :class:`InputError`; duplicate and unpaired labels are :func:`register_landmarks`' errors.
    """
    name = point_list.GetName()
    defined = point_list.PositionDefined
    labels, points = [], []
    for index in range(point_list.GetNumberOfControlPoints()):
        if point_list.GetNthControlPointPositionStatus(index) != defined:
            continue  # being placed, or skipped: not a landmark yet
        label = (point_list.GetNthControlPointLabel(index) or "").strip()
        if not label:
            raise InputError(f"control point {index + 1} of {name!r} has no label: name each pair's points alike")
        position = [0.0, 0.0, 0.0]
        if ceus:
            point_list.GetNthControlPointPosition(index, position)
        else:
            point_list.GetNthControlPointPositionWorld(index, position)
        labels.append(label)
        points.append(np.asarray(position, dtype=float) * _F)
    if not labels:
        raise InputError(f"point list {name!r} has no placed control points")
    return Landmarks(tuple(labels), np.array(points, dtype=float), "mm", name)


def next_pair_point(ceus_list: Any, patient_list: Any, prefix: str = "P") -> tuple[Any, str, int]:
    """Prepare the next point of "Place pair", which alternates CEUS point, then its CT partner.

    When a CEUS point has no CT point of its label yet, the CT list gets that label next; otherwise the
    CEUS list gets a new label ``P<n>``. The point is added unplaced (``UnsetNthControlPointPosition``) and
    made the list's placement index, as the Markups module's "place" button does, so that the next click
    in a view places it. Returns (point list, label, index)."""
    def labels(point_list, defined_only):
        return [point_list.GetNthControlPointLabel(i) for i in range(point_list.GetNumberOfControlPoints())
                if not defined_only or point_list.GetNthControlPointPositionStatus(i) == point_list.PositionDefined]

    ceus_labels, patient_labels = labels(ceus_list, True), labels(patient_list, True)
    waiting = [label for label in ceus_labels if label not in patient_labels]
    if waiting:
        target, label = patient_list, waiting[0]
    elif len(labels(ceus_list, False)) > len(ceus_labels):  # a placement left unfinished: finish it
        target = ceus_list
        label = next(label for label in labels(ceus_list, False) if label not in ceus_labels)
    else:
        taken = set(labels(ceus_list, False)) | set(labels(patient_list, False))
        number = len(ceus_labels) + 1
        while f"{prefix}{number}" in taken:
            number += 1
        target, label = ceus_list, f"{prefix}{number}"
    index = next((i for i in range(target.GetNumberOfControlPoints()) if target.GetNthControlPointLabel(i) == label
                  and target.GetNthControlPointPositionStatus(i) != target.PositionDefined), None)
    if index is None:
        index = target.AddControlPoint(0.0, 0.0, 0.0, label)
        target.UnsetNthControlPointPosition(index)
    target.SetControlPointPlacementStartIndex(index)
    return target, label, index


# ------------------------------------------------------------------------------------------------
# Register


@dataclass
class PetCtRegistration:
    """Register's result: the engine's :class:`Registration` (FRE, residuals, LOO TRE, warnings), the panel
    the CEUS points lie on, the flagged pair (or None) and the expected target error at each ROI (mm)."""

    registration: Registration
    panel: str
    flagged: str | None
    expected_tre_mm: dict[str, float | None]

    def summary(self) -> str:
        """One line for the module's status label."""
        registration = self.registration
        text = f"{len(registration.landmarks)} pairs on the {self.panel} panel: FRE {registration.fre_rms_mm:.2f} mm"
        if registration.tre_loo_rms_mm is not None:
            text += f", LOO TRE {registration.tre_loo_rms_mm:.2f} mm"
        known = {name: value for name, value in self.expected_tre_mm.items() if value is not None}
        if known:
            text += ", expected TRE " + ", ".join(f"{name} {value:.2f} mm" for name, value in known.items())
        if self.flagged:
            text += (f"; pair {self.flagged!r} is off (residual > {FLAG_RATIO:g} x the other pairs' RMS): check its "
                     "two points")
        return " ".join([text + "."] + registration.warnings)


def analysis_inputs(analysis: Any) -> AnalysisInputs:
    """The in-memory :class:`~DCEUSResponseLib.ceus.results.Analysis` as ``fuse``'s view of an analysis."""
    return AnalysisInputs("", {}, analysis.clip, analysis.layout, list(analysis.roi_masks), analysis.options.reference)


def registration_panel(inputs: AnalysisInputs, ceus_mm: np.ndarray, source: str) -> str:
    """The panel all CEUS frame points (N, 3) lie on; an :class:`InputError` when they straddle both."""
    dy, dx = inputs.spacing_mm
    panel = inputs.panel_of(ceus_mm[:, 1] / dy, ceus_mm[:, 0] / dx)
    if panel is None:
        raise InputError("the CEUS landmarks are not all on one panel of the dual display: place them on one panel",
                         source)
    return panel


def flagged_pair(registration: Registration) -> str | None:
    """The worst pair when its residual exceeds :data:`FLAG_RATIO` x the other pairs' RMS residual and
    :data:`FLAG_FLOOR_MM`; None otherwise (and for 3 pairs, whose exact fit leaves nothing to compare)."""
    pairs = registration.landmarks
    if len(pairs) < 4:
        return None
    worst = max(pairs, key=lambda pair: pair.residual_mm)
    others = np.sqrt(np.mean([pair.residual_mm ** 2 for pair in pairs if pair is not worst]))
    return worst.label if worst.residual_mm > max(FLAG_RATIO * others, FLAG_FLOOR_MM) else None


def register_point_lists(ceus_list: Any, patient_list: Any, inputs: AnalysisInputs) -> PetCtRegistration:
    """The engine's rigid fit (:func:`register_landmarks`) of the two point lists, paired by label."""
    ceus, patient = point_list_landmarks(ceus_list, ceus=True), point_list_landmarks(patient_list, ceus=False)
    registration = register_landmarks(ceus, patient, inputs.frame_shape, inputs.spacing_mm)
    panel = registration_panel(inputs, np.array([pair.ceus_mm for pair in registration.landmarks]), ceus.source)
    return PetCtRegistration(registration, panel, flagged_pair(registration), roi_expected_tre_mm(registration,
                                                                                                  inputs, panel))


def roi_expected_tre_mm(registration: Registration, inputs: AnalysisInputs, panel: str) -> dict[str, float | None]:
    """The expected target error (mm) at each ROI's centroid, carried onto the registration panel."""
    dy, dx = inputs.spacing_mm
    result = {}
    for roi in inputs.rois:
        drow, dcol = panel_shift_px(inputs, inputs.roi_panel(roi), panel)
        centroid = roi_centroid_frame_mm(roi.mask, inputs.spacing_mm) + [dcol * dx, drow * dy, 0.0]
        result[roi.name] = registration.expected_tre_mm(centroid)
    return result


def flag_pair(point_lists: Sequence[Any], label: str | None) -> None:
    """Show the flagged pair's points in :data:`FLAG_COLOUR`: Markups has no per-point colour, but draws
    selected points in the display's SelectedColor (the list's colour) and unselected ones in its Color
    (``vtkSlicerMarkupsWidgetRepresentation::GetWidgetColor``): the flagged points are unselected."""
    for point_list in point_lists:
        display = point_list.GetDisplayNode()
        if display is None:
            point_list.CreateDefaultDisplayNodes()
            display = point_list.GetDisplayNode()
        display.SetColor(*FLAG_COLOUR)
        for index in range(point_list.GetNumberOfControlPoints()):
            point_list.SetNthControlPointSelected(index, point_list.GetNthControlPointLabel(index) != label)


def add_pairs_table(scene: Any, result: PetCtRegistration, table: Any = None, name: str = "PET/CT landmark pairs"):
    """A table of the pairs (label, residual, flag, CEUS frame mm, patient LPS mm); the FRE and LOO TRE
    (mm) as attributes. ``table`` (from an earlier Register) is refilled."""
    if table is None or table.GetScene() is not scene:
        table = add_new_node(scene, "vtkMRMLTableNode", name)
    table.RemoveAllColumns()
    pairs = result.registration.landmarks
    add_string_column(table, "label", [pair.label for pair in pairs])
    add_double_column(table, "residual_mm", [pair.residual_mm for pair in pairs], "mm", "distance of the fitted "
                       "CEUS point from its CT point")
    add_int_column(table, "flagged", [int(pair.label == result.flagged) for pair in pairs],
                    f"1 when the residual exceeds {FLAG_RATIO:g} x the other pairs' RMS residual and "
                    f"{FLAG_FLOOR_MM:g} mm")
    for prefix, key, description in (("ceus", "ceus_mm", "CEUS frame"), ("patient", "patient_mm", "patient LPS")):
        for axis, letter in enumerate("xyz"):
            add_double_column(table, f"{prefix}_{letter}_mm", [getattr(pair, key)[axis] for pair in pairs], "mm",
                               f"{description} {letter}")
    table.SetUseFirstColumnAsRowHeader(True)
    for key, value in (("DCEUS.FRE_mm", result.registration.fre_rms_mm),
                       ("DCEUS.TRE_LOO_mm", result.registration.tre_loo_rms_mm)):
        table.SetAttribute(key, "" if value is None else repr(float(value)))
    table.SetAttribute("DCEUS.RegistrationPanel", result.panel)
    return table


# ------------------------------------------------------------------------------------------------
# the CEUS nodes under the registration


@dataclass
class CeusNodes:
    """The CEUS nodes of one analysis in the scene, by the panel whose frame coordinates they hold."""

    contrast_volume: Any
    bmode_volume: Any | None = None
    segmentation: Any | None = None
    maps: dict[str, Any] = field(default_factory=dict)
    landmarks: Any | None = None  # the CEUS point list (registration panel coordinates)


def ceus_nodes_of_browser(browser: Any, segmentation: Any = None, maps: dict[str, Any] | None = None,
                          landmarks: Any = None) -> CeusNodes:
    """The proxy volumes of a clip's browser by panel (attribute ``DCEUS.Panel``; the master's proxy is the
    contrast panel when no sequence has it), with the clip's segmentation, maps and CEUS point list."""
    from vtkmodules.vtkCommonCore import vtkCollection

    collection = vtkCollection()
    browser.GetSynchronizedSequenceNodes(collection, True)
    proxies = {}
    for index in range(collection.GetNumberOfItems()):
        sequence = collection.GetItemAsObject(index)
        panel = sequence.GetAttribute("DCEUS.Panel") or (PANEL_CONTRAST if sequence is browser.GetMasterSequenceNode()
                                                         else None)
        if panel in (PANEL_CONTRAST, PANEL_BMODE):
            proxies[panel] = browser.GetProxyNode(sequence)
    if proxies.get(PANEL_CONTRAST) is None:
        raise InputError("the clip's browser shows no contrast panel volume", browser.GetName())
    return CeusNodes(proxies[PANEL_CONTRAST], proxies.get(PANEL_BMODE), segmentation, dict(maps or {}), landmarks)


def _transform_node(scene: Any, name: str, existing: Any = None):
    if existing is not None and existing.GetScene() is scene:
        return existing
    node = scene.GetFirstNodeByName(name)
    if node is not None and node.IsA("vtkMRMLLinearTransformNode"):
        return node
    return add_new_node(scene, "vtkMRMLLinearTransformNode", name)


def place_ceus_nodes(scene: Any, ceus_to_patient_lps: np.ndarray, panel: str, inputs: AnalysisInputs,
                     nodes: CeusNodes, registration_node: Any = None):
    """Put the CEUS nodes under the registration ("CEUS to patient", to-parent = the registration in RAS,
    as ``fuse --scene``): the ``panel`` nodes directly, the other panel's under a translation by the panel
    offset (the panels of a dual display show one plane); the CEUS point list with the ``panel`` nodes.
    The segmentation goes with the panel most ROIs lie on. Returns the registration node (refilled when
    given or when the scene has one of that name)."""
    registration = _transform_node(scene, REGISTRATION_NODE_NAME, registration_node)
    registration.SetMatrixTransformToParent(vtk_matrix(ras_to_lps_matrix(ceus_to_patient_lps)))
    under = {panel: registration}
    other = PANEL_CONTRAST if panel == PANEL_BMODE else PANEL_BMODE
    if inputs.layout.bmode is not None:
        shift = _transform_node(scene, f"{other} panel to {panel} panel")
        drow, dcol = panel_shift_px(inputs, other, panel)
        dy, dx = inputs.spacing_mm
        matrix = np.eye(4)
        matrix[0, 3], matrix[1, 3] = -dcol * dx, -drow * dy  # frame (x, y) mm -> RAS (-x, -y)
        shift.SetMatrixTransformToParent(vtk_matrix(matrix))
        shift.SetAndObserveTransformNodeID(registration.GetID())
        under[other] = shift
    else:
        under[other] = registration
    placed = [(nodes.contrast_volume, PANEL_CONTRAST), (nodes.bmode_volume, PANEL_BMODE), (nodes.landmarks, panel)]
    placed += [(node, PANEL_CONTRAST) for node in nodes.maps.values()]
    if nodes.segmentation is not None:
        panels = [inputs.roi_panel(roi) for roi in inputs.rois] or [PANEL_CONTRAST]
        placed.append((nodes.segmentation, max(set(panels), key=panels.count)))
    for node, node_panel in placed:
        if node is not None:
            node.SetAndObserveTransformNodeID(under[node_panel].GetID())
    return registration


def transform_panel(inputs: AnalysisInputs) -> str:
    """The panel a loaded transform maps (``fuse --transform``'s default): B-mode on a dual display."""
    return PANEL_BMODE if inputs.layout.bmode is not None else PANEL_CONTRAST
