"""A whole analysis as a Slicer scene bundle (``.mrb``), written atomically."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Sequence

from DCEUSResponseLib.ceus.results import Analysis
from DCEUSResponseLib.clip import RoiMask, shareable_uids
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.scene.analysis_views import add_analysis_views
from DCEUSResponseLib.scene.application import create_headless_application
from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences
from DCEUSResponseLib.scene.map_volumes import add_parameter_maps
from DCEUSResponseLib.scene.segmentation import add_roi_segmentation
from DCEUSResponseLib.scene.tables import add_analysis_results, provenance_attributes


def write_scene_bundle(analysis: "Analysis", path: str, *, rois: Sequence[RoiMask] | None = None,
                       cache_dir: str | None = None) -> str:
    """Write an analysis as a Slicer scene bundle (``.mrb``) at ``path``; returns its absolute path.

    A fresh headless scene gets the clip's sequences and browser, the ROIs (full-frame masks, as
    given to the analysis; none when ``rois`` is None) as a segmentation referencing the contrast
    volume, the TIC and parameter tables and the chart, and, when the analysis has maps, the map
    volumes with their colour tables (:func:`add_parameter_maps`), and the slice views it opens on
    (:func:`~DCEUSResponseLib.scene.analysis_views.add_analysis_views`). The bundle is written into a
    temporary folder next to ``path`` (same file system) and moved into place with
    :func:`os.replace`, so ``path`` is either the old file or the complete new one; nothing else is
    left behind.
    ``cache_dir`` is the scratch folder Slicer packs the bundle in (default: a temporary folder in
    ``$TMPDIR``; the command line gives one inside its staging folder, so that nothing, not even
    the clip's pixels, is written outside the output folder).
    The sequences carry as ``DICOM.*`` attributes only the clip's
    :func:`~DCEUSResponseLib.clip.shareable_uids` (identifiers only with ``keep_identifiers``).
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not path.lower().endswith(".mrb"):
        raise InputError("a Slicer scene bundle must be named *.mrb", path)
    if not os.path.isdir(folder):
        raise InputError("the scene's folder does not exist", folder)
    with create_headless_application(cache_dir) as app:
        scene = app.scene
        clip = dataclasses.replace(analysis.clip,
                                   uids=shareable_uids(analysis.clip.uids, analysis.options.keep_identifiers))
        clip_nodes = add_clip_sequences(scene, clip, analysis.layout,
                                        selected_frame=int(analysis.options.reference_frame))
        segmentation_node = None
        if rois:
            segmentation_node = add_roi_segmentation(scene, rois, clip, clip_nodes.contrast_volume)
        add_analysis_results(scene, analysis, segmentation_node=segmentation_node)
        map_nodes = None
        if analysis.maps is not None:
            map_nodes = add_parameter_maps(scene, analysis.maps, frame_spacing_mm=analysis.clip.frame_spacing_mm)
            for node in map_nodes.values():
                for key, value in provenance_attributes(analysis).items():
                    node.SetAttribute(key, value)
        add_analysis_views(scene, clip_nodes, map_nodes, segmentation_node)
        save_scene_bundle(scene, path)
    return path


def save_scene_bundle(scene, path: str) -> None:
    """Write ``scene`` as the bundle ``path`` (absolute, ``*.mrb``) through a staging folder beside it and
    :func:`os.replace`; one-line :class:`InputError` when Slicer or the file system refuses."""
    import slicer

    folder = os.path.dirname(path)
    try:
        staging = tempfile.mkdtemp(prefix=".dceus-scene-", dir=folder)
    except OSError as error:
        raise InputError(f"the scene's folder is not writable ({error.strerror or error})", folder) from None
    try:
        # The bundle's inner folder and scene file take the name of the file written: write
        # under the final name inside the staging folder.
        staged = os.path.join(staging, os.path.basename(path))
        # As Slicer's scene writer does: the scene's URL and root folder are the bundle's.
        scene.SetURL(staged)
        scene.SetRootDirectory(staging)
        messages = slicer.vtkMRMLMessageCollection()
        written = scene.WriteToMRB(staged, None, messages)
        errors = messages.GetNumberOfMessagesOfType(_vtk_error_event())
        if not written or errors or not os.path.isfile(staged):
            details = " ".join(messages.GetAllMessagesAsString().split()) or "no details"
            raise InputError(f"Slicer could not write the scene bundle ({details})", path)
        os.replace(staged, path)
    except OSError as error:
        raise InputError(f"cannot write the scene bundle ({error.strerror or error})", path) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _vtk_error_event() -> int:
    from vtkmodules.vtkCommonCore import vtkCommand

    return vtkCommand.ErrorEvent
