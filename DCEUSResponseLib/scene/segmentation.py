"""ROIs as a segmentation on the contrast panel volume, and back to full-frame masks."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.masks import check_roi_names
from DCEUSResponseLib.scene.nodes import (
    ROI_COLOURS,
    add_new_node,
    numpy_matrix,
    volume_ijk_to_ras,
    vtk_matrix,
)

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer



def add_roi_segmentation(scene: "slicer.vtkMRMLScene", rois: Sequence[RoiMask], clip: Clip,
                         reference_volume: "slicer.vtkMRMLVolumeNode", name: str = "ROIs",
                         colours: Mapping[str, tuple[float, float, float]] | None = None
                         ) -> "slicer.vtkMRMLSegmentationNode":
    """A segmentation with one segment per ROI (named after it), on the clip's pixel grid.

    ``rois`` are full-frame masks; each segment is stored where its pixels are, on either panel.
    The segmentation references ``reference_volume`` (normally the contrast panel volume) and its
    reference geometry is that volume's grid extended over the whole frame, so segments can be
    drawn and edited on either panel. ``colours`` (RGB 0..1 by ROI name) default to
    :data:`ROI_COLOURS`.
    """
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR

    frame_shape = (clip.rows, clip.columns)
    reference_matrix = volume_ijk_to_ras(reference_volume)
    x0, y0 = clip.frame_geometry.panel_origin_px(reference_matrix,
                                                 f"reference volume {reference_volume.GetName()!r}", clip.source)
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate ROI names among {names}", clip.source)

    segmentation_node = add_new_node(scene, "vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    _set_source_representation_to_binary_labelmap(segmentation_node)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    # Extend the reference geometry (same grid) over the whole frame so that ROIs on either panel fit.
    frame_extent = [-x0, clip.columns - 1 - x0, -y0, clip.rows - 1 - y0, 0, 0]
    segmentation = segmentation_node.GetSegmentation()
    segmentation.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(vtk_matrix(reference_matrix), frame_extent))
    segmentation_node.SetAttribute("DCEUS.Source", clip.source)

    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for index, roi in enumerate(rois):
        mask = np.asarray(roi.mask, dtype=bool)
        if mask.shape != frame_shape:
            raise InputError(f"mask of ROI {roi.name!r} is {mask.shape[0]} x {mask.shape[1]} pixels but the "
                             f"frames are {frame_shape[0]} x {frame_shape[1]}", roi.source)
        rows, columns = np.nonzero(mask)
        if rows.size == 0:
            raise InputError(f"ROI {roi.name!r} is empty (no non-zero pixel)", roi.source)
        r0, r1, c0, c1 = rows.min(), rows.max(), columns.min(), columns.max()
        image = slicer.vtkOrientedImageData()
        image.SetExtent(int(c0 - x0), int(c1 - x0), int(r0 - y0), int(r1 - y0), 0, 0)
        image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
        voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(r1 - r0 + 1, c1 - c0 + 1)
        voxels[:] = mask[r0:r1 + 1, c0:c1 + 1]
        image.SetImageToWorldMatrix(vtk_matrix(reference_matrix))
        segment = slicer.vtkSegment()
        segment.SetName(roi.name)
        colour = (colours or {}).get(roi.name) or ROI_COLOURS[index % len(ROI_COLOURS)]
        segment.SetColor(*map(float, colour))
        segment.AddRepresentation(labelmap_name, image)
        segmentation.AddSegment(segment, roi.name)
    # Share labelmap layers between ROIs that do not overlap, as the Segment Editor does.
    segmentation.CollapseBinaryLabelmaps(False)
    return segmentation_node


def _set_source_representation_to_binary_labelmap(segmentation_node) -> None:
    if hasattr(segmentation_node, "SetSourceRepresentationToBinaryLabelmap"):
        segmentation_node.SetSourceRepresentationToBinaryLabelmap()
    else:  # Slicer before 5.4 called it the master representation
        segmentation_node.SetMasterRepresentationToBinaryLabelmap()


def rois_from_segmentation(segmentation_node: "slicer.vtkMRMLSegmentationNode", clip: Clip,
                           clip_volume_node: "slicer.vtkMRMLVolumeNode | None" = None) -> list[RoiMask]:
    """One full-frame :class:`RoiMask` per segment, named after the segment.

    Each segment is exported as a binary labelmap on the clip's frame geometry (a temporary
    reference volume covering the frame, removed again). The frame is where the clip is: under the
    parent transform of ``clip_volume_node`` (a volume of the clip, e.g. its contrast proxy volume)
    or, without it, under the segmentation's own parent transform, so that ROIs are read in the
    clip's frame when co-registration has put the CEUS nodes under a transform (Slicer's export
    maps the segments from the segmentation's transform to the reference volume's). A segment on
    another pixel grid, reaching outside the frame, off the frame's plane, or empty is an
    :class:`InputError`, as for ``.seg.nrrd`` files on the command line.
    """
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkImageData

    scene = segmentation_node.GetScene()
    source = f"segmentation {segmentation_node.GetName()!r}"
    if scene is None:
        raise InputError("the segmentation node is not in a scene", source)
    geometry = clip.frame_geometry
    frame_matrix = geometry.panel_ijk_to_ras(0, 0)
    segmentation = segmentation_node.GetSegmentation()
    segment_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if not segment_ids:
        raise InputError("the segmentation has no segments", source)
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()

    before = _node_ids(scene)
    reference = add_new_node(scene, "vtkMRMLScalarVolumeNode", "__dceus_frame_reference__")
    labelmap = add_new_node(scene, "vtkMRMLLabelMapVolumeNode", "__dceus_roi_export__")
    try:
        reference.SetIJKToRASMatrix(vtk_matrix(frame_matrix))
        frame_transform_id = (clip_volume_node or segmentation_node).GetTransformNodeID()
        reference.SetAndObserveTransformNodeID(frame_transform_id)
        # The segments' own grid is checked against the frame only where both share one coordinate system.
        same_frame = frame_transform_id == segmentation_node.GetTransformNodeID()
        frame_image = vtkImageData()
        frame_image.SetDimensions(clip.columns, clip.rows, 1)
        frame_image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
        reference.SetAndObserveImageData(frame_image)

        rois: list[RoiMask] = []
        for segment_id in segment_ids:
            segment = segmentation.GetSegment(segment_id)
            segment_name = segment.GetName() or segment_id
            internal_count = None
            internal = (segment.GetRepresentation(labelmap_name)
                        if same_frame and _is_labelmap_source(segmentation) else None)
            if internal is not None and internal.GetPointData().GetScalars() is not None:
                internal_matrix = _oriented_image_to_world(internal)
                geometry.panel_origin_px(internal_matrix, f"segment {segment_name!r}", source)
                values = numpy_support.vtk_to_numpy(internal.GetPointData().GetScalars())
                internal_count = int(np.count_nonzero(values == segment.GetLabelValue()))
            ids = vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    segmentation_node, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise InputError(f"segment {segment_name!r} could not be exported as a labelmap", source)
            image = labelmap.GetImageData()
            if image is None or image.GetDimensions() != (clip.columns, clip.rows, 1):
                raise InputError(f"segment {segment_name!r} was not exported on the clip's frame", source)
            mask = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(clip.rows, clip.columns) != 0
            pixels = int(np.count_nonzero(mask))
            if pixels == 0:
                raise InputError(f"segment {segment_name!r} is empty on the clip's frame", source)
            if internal_count is not None and pixels != internal_count:
                raise InputError(f"segment {segment_name!r} has {internal_count - pixels} of its {internal_count} "
                                 f"pixels outside the clip's {clip.rows} x {clip.columns} frame or off its plane",
                                 source)
            rois.append(RoiMask(segment_name, mask.copy(), source))
    finally:
        for node_id in _node_ids(scene) - before:  # the helpers and whatever the export added
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)
    check_roi_names(rois)
    return rois


def _is_labelmap_source(segmentation) -> bool:
    import slicer

    name = (segmentation.GetSourceRepresentationName() if hasattr(segmentation, "GetSourceRepresentationName")
            else segmentation.GetMasterRepresentationName())
    return name == slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def _oriented_image_to_world(image) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return numpy_matrix(matrix)


def _node_ids(scene) -> set[str]:
    nodes = scene.GetNodes()
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def show_roi_outlines(segmentation_node) -> None:
    """Show the ROIs as outlines (2 px) without fill in slice views, so the image under them stays visible."""
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(2)
