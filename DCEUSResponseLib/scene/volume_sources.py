"""The DICOM files behind a CT or PET volume node that Slicer's DICOM browser loaded, as ``fuse`` reads them.

A node loaded by ``DICOMScalarVolumePlugin`` (and PETDICOMExtension's loader) carries its instances'
SOP Instance UIDs (``DICOM.instanceUIDs``); the DICOM database maps each to its file. ``fuse`` reads
folders, so :func:`series_source` turns the files into the folder (or ``FOLDER::SeriesInstanceUID``)
that holds exactly them, or, when none does, a folder of hard links in a work folder.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.volumes import SERIES_SEPARATOR

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"  # DICOMScalarVolumePlugin.load (Slicer 5.12)


def dicom_files(volume_node: Any, database: Any) -> list[str]:
    """The files of a volume loaded by Slicer's DICOM browser: its ``DICOM.instanceUIDs`` through
    ``database.fileForInstance`` (``slicer.dicomDatabase`` in Slicer). One-line :class:`InputError`
    when the node has no UIDs or the database does not know one of them."""
    name = volume_node.GetName()
    uids = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids or "Unknown" in uids:
        raise InputError(f"volume {name!r} was not loaded from the DICOM database (no {INSTANCE_UIDS_ATTRIBUTE}): "
                         "choose its DICOM folder instead")
    if database is None:
        raise InputError(f"no DICOM database to find the files of volume {name!r}: choose its DICOM folder")
    files = [database.fileForInstance(uid) for uid in uids]
    missing = [uid for uid, path in zip(uids, files) if not path or not os.path.isfile(path)]
    if missing:
        raise InputError(f"the DICOM database has no file for {len(missing)} of the {len(uids)} instances of "
                         f"volume {name!r} (first {missing[0]})")
    return list(dict.fromkeys(files))


def series_source(files: Sequence[str], work_dir: str, name: str) -> str:
    """What ``fuse`` reads as exactly these files: their own folder when it holds nothing else;
    ``FOLDER::SeriesInstanceUID`` when the folder's files of that series are exactly these (an export
    holding the CT and the PET: ``fusion.json`` then names the real folder); else ``work_dir/name``
    with a hard link (a copy across file systems) of each (a series spread over folders, or a volume
    Slicer split off its series)."""
    files = [os.path.abspath(path) for path in files]
    if not files:
        raise InputError(f"no DICOM files for the {name}")
    for path in files:
        if not os.path.isfile(path):
            raise InputError(f"{name} file not found", path)
    folders = {os.path.dirname(path) for path in files}
    if len(folders) == 1:  # a series spread over folders is linked: never walk a common parent (maybe "/")
        folder = folders.pop()
        below = {os.path.join(root, entry) for root, _, entries in os.walk(folder) for entry in entries}
        if below == set(files):
            return folder
        selected = _series_selection(folder, below, set(files))
        if selected is not None:
            return selected
    target = os.path.join(os.path.abspath(work_dir), name)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    for index, path in enumerate(files):
        link = os.path.join(target, f"{index:05d}.dcm")
        try:
            os.link(path, link)
        except OSError:
            shutil.copyfile(path, link)
    return target


def _series_selection(folder: str, below: set[str], files: set[str]) -> str | None:
    """``folder::UID`` when ``files`` are one series and exactly that series' files under ``folder``."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    def series_uid(path: str) -> str | None:
        try:
            return str(dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
        except (InvalidDicomError, OSError, AttributeError, ValueError, KeyError, EOFError):
            return None  # not DICOM (notes, thumbnails), or no series: fuse's reader skips it too

    uid_of = {path: series_uid(path) for path in below}  # ``files`` lie in ``below``: each header read once
    uids = {uid_of[path] for path in files}
    if len(uids) != 1 or None in uids:
        return None
    uid = uids.pop()
    if {path for path, other in uid_of.items() if other == uid} != files:
        return None
    return f"{folder}{SERIES_SEPARATOR}{uid}"


def volume_source(volume_node: Any, work_dir: str, name: str, database: Any = None,
                  files: Sequence[str] | None = None, folder: str | None = None) -> str:
    """What ``fuse`` reads for a CT or PET node: ``folder`` (a series folder or ``FOLDER::UID``) when given,
    else ``files``, else the node's files in ``database`` (:func:`dicom_files`)."""
    if folder:
        return folder
    if not files:
        files = dicom_files(volume_node, database)
    return series_source(files, work_dir, name)
