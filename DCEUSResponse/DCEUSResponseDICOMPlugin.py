"""DICOM plugin of DCEUSResponse: loads ultrasound cine clips for DCE-US quantification.

It examines every ultrasound cine clip of a series (an Ultrasound Multi-frame Image Storage instance
with at least 2 frames, or a series of at least 2 single-frame Ultrasound Image Storage instances of
one size) and claims it by what the header says (``DCEUSResponseLib.io.ultrasound_kind``): a
contrast clip (contrast agent, dual contrast | B-mode display, or a contrast mode in the
descriptions) that the installed decoders read is offered selected, above Slicer's generic
image-sequence plugin; any other ultrasound cine (cardiac, B-mode) is offered below the generic
plugins and not selected, so it stays theirs; a transfer syntax that cannot be decoded here is
offered only with a warning saying what is missing. It loads a clip through the engine (``DCEUSResponseLib.io.dicom_us.read_clip``, which keeps the
exact frame times, the ultrasound regions and the DICOM UIDs) into a sequence browser
(``DCEUSResponseLib.scene.clip_nodes.add_clip_sequences``): the clip the DCEUSResponse module analyses.

Registration follows Slicer's own DICOM plugins (Modules/Scripted/DICOMPlugins): this file is a
hidden scripted module whose constructor adds the plugin class to ``slicer.modules.dicomPlugins``.
"""
import logging
import os
import shutil
import sys
import tempfile

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin
from slicer.i18n import tr as _

try:
    import DCEUSResponseLib  # noqa: F401  (installed by the extension next to this file)
except ImportError:  # running from a source checkout: the engine is at the repository root, one level up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

US_MULTIFRAME_SOP_CLASS_UIDS = (
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (Retired)
)
US_SINGLE_FRAME_SOP_CLASS_UIDS = (
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
)
# DICOMImageSequencePlugin offers these files with confidence 0.7 ("slightly larger than default scalar
# volume plugin's (0.5)"); DICOMGeAbusPlugin claims GE Invenia ABUS volumes with 0.9. A CEUS clip is
# best loaded with its exact timing and regions, hence between the two; other ultrasound cines belong
# to the generic plugins, hence below the scalar volume plugin; clips that cannot be decoded, lowest.
CONTRAST_CLIP_CONFIDENCE = 0.8
OTHER_CINE_CONFIDENCE = 0.4
UNDECODABLE_CONFIDENCE = 0.05


#
# DCEUSResponseDICOMPluginClass
#


class DCEUSResponseDICOMPluginClass(DICOMPlugin):
    """Ultrasound cine clips (B-mode or contrast, single or dual display) as DCE-US clips."""

    def __init__(self):
        super().__init__()
        self.loadType = _("DCE-US clip")
        self.tags["sopClassUID"] = "0008,0016"
        self.tags["seriesNumber"] = "0020,0011"
        self.tags["seriesDescription"] = "0008,103E"
        self.tags["instanceNumber"] = "0020,0013"
        self.tags["modality"] = "0008,0060"
        self.tags["numberOfFrames"] = "0028,0008"
        self.tags["rows"] = "0028,0010"
        self.tags["columns"] = "0028,0011"

    def examineForImport(self, fileLists):
        """Loadables for each list of files (one series each), cached per list as DICOMPlugin does."""
        loadables = []
        for files in fileLists:
            cached = self.getCachedLoadables(files)
            if cached is None:
                cached = self.examineFiles(files)
                self.cacheLoadables(files, cached)
            loadables += cached
        return loadables

    def examine(self, fileLists):
        """Backwards-compatible name of examineForImport (DICOMUtils falls back to it)."""
        return self.examineForImport(fileLists)

    def examineFiles(self, files):
        """One loadable per multi-frame ultrasound clip, plus one for the series' single-frame images."""
        multiFrame = []  # (file, values)
        singleFrame = []
        for filePath in files:
            values = self._tagValues(filePath)
            if values is None:
                continue
            if values["sopClassUID"] in US_MULTIFRAME_SOP_CLASS_UIDS:
                if _toInt(values["numberOfFrames"]) >= 2:
                    multiFrame.append((filePath, values))
            elif values["sopClassUID"] in US_SINGLE_FRAME_SOP_CLASS_UIDS:
                singleFrame.append((filePath, values))

        loadables = []
        for filePath, values in multiFrame:
            frames = _toInt(values["numberOfFrames"])
            instance = values["instanceNumber"] if len(multiFrame) > 1 else ""
            loadable = self._loadable([filePath], values, frames, instance)
            if loadable is not None:
                loadables.append(loadable)
        if len(singleFrame) >= 2:
            sizes = {(values["rows"], values["columns"]) for _path, values in singleFrame}
            if len(sizes) == 1:  # one clip; images of different sizes are not frames of one clip
                loadable = self._loadable([path for path, _values in singleFrame], singleFrame[0][1],
                                          len(singleFrame), "")
                if loadable is not None:
                    loadables.append(loadable)
        return loadables

    def _loadable(self, files, values, frames, instanceNumber):
        """A loadable claimed by what the first file's header says (see the module docstring)."""
        from DCEUSResponseLib.io.ultrasound_kind import assess_ultrasound_header

        try:
            import pydicom

            kind = assess_ultrasound_header(pydicom.dcmread(files[0], stop_before_pixels=True))
        except Exception as error:
            logging.debug(f"DCEUSResponseDICOMPlugin: cannot read {files[0]}: {error}")
            return None
        name = values["seriesDescription"] or _("Ultrasound clip")
        if values["seriesNumber"]:
            name = f"{values['seriesNumber']}: {name}"
        if instanceNumber:
            name = f"{name} [{instanceNumber}]"
        loadable = DICOMLoadable()
        loadable.files = list(files)
        loadable.name = name
        loadable.tooltip = _("Ultrasound cine clip, {frames} frames, for DCE-US quantification (DCEUSResponse)") \
            .format(frames=frames)
        loadable.warning = ""
        if not kind.decodable:
            loadable.warning = _("Cannot be loaded as a DCE-US clip: {problem}.").format(problem=kind.decoding_problem)
            loadable.selected = False
            loadable.confidence = UNDECODABLE_CONFIDENCE
        elif kind.is_contrast:
            loadable.tooltip += " - " + kind.contrast_evidence
            loadable.selected = True
            loadable.confidence = CONTRAST_CLIP_CONFIDENCE
        else:
            loadable.tooltip += " - " + _("no sign of contrast imaging in the header")
            loadable.selected = False
            loadable.confidence = OTHER_CINE_CONFIDENCE
        return loadable

    def _tagValues(self, filePath):
        """The tags this plugin uses, from the DICOM database (fast) or the file header; None if unreadable."""
        names = ("sopClassUID", "seriesNumber", "seriesDescription", "instanceNumber", "numberOfFrames", "rows",
                 "columns")
        try:
            values = {name: slicer.dicomDatabase.fileValue(filePath, self.tags[name]).strip() for name in names}
            if values["sopClassUID"]:
                return values
        except Exception:  # no database (e.g. examined from a script): read the header
            pass
        try:
            import pydicom

            ds = pydicom.dcmread(filePath, stop_before_pixels=True)
        except Exception as error:
            logging.debug(f"DCEUSResponseDICOMPlugin: cannot read {filePath}: {error}")
            return None
        keywords = {"sopClassUID": "SOPClassUID", "seriesNumber": "SeriesNumber",
                    "seriesDescription": "SeriesDescription", "instanceNumber": "InstanceNumber",
                    "numberOfFrames": "NumberOfFrames", "rows": "Rows", "columns": "Columns"}
        return {name: str(ds.get(keyword, "") or "").strip() for name, keyword in keywords.items()}

    def load(self, loadable):
        """Read the clip with the engine and add it to the scene as a sequence browser."""
        from DCEUSResponseLib.scene import clip_nodes
        from DCEUSResponseLib.io.dicom_us import read_clip
        from DCEUSResponseLib.errors import InputError
        from DCEUSResponseLib.ceus.layout import find_layout

        try:
            clip = read_clip(loadable.files[0]) if len(loadable.files) == 1 else self._readSeries(loadable.files)
            layout = find_layout(clip)
        except InputError as error:
            logging.error(f"DCEUSResponse: cannot load {loadable.name!r} as a DCE-US clip: {error}")
            return None
        for warning in list(clip.warnings) + list(layout.warnings):
            logging.warning(f"DCEUSResponse: {loadable.name}: {warning}")

        nodes = clip_nodes.add_clip_sequences(slicer.mrmlScene, clip, layout, name=loadable.name)
        for volumeNode in (nodes.contrast_volume, nodes.bmode_volume):
            if volumeNode is not None:
                self.addSeriesInSubjectHierarchy(loadable, volumeNode)
        self._show(nodes)
        return nodes.browser

    def _readSeries(self, files):
        """A series of single-frame files: read as one folder (read_clip orders the frames)."""
        from DCEUSResponseLib.io.dicom_us import read_clip

        self.tempDir = tempfile.mkdtemp(prefix="DCEUSResponse-series-", dir=slicer.app.temporaryPath)
        try:
            for index, filePath in enumerate(files):
                target = os.path.join(self.tempDir, f"{index:06d}.dcm")
                try:
                    os.link(filePath, target)  # no copy when the file system allows
                except OSError:
                    shutil.copyfile(filePath, target)
            return read_clip(self.tempDir)
        finally:
            self.cleanup()

    @staticmethod
    def _show(nodes):
        """Show the contrast panel in the slice views and the clip's browser in the toolbar."""
        appLogic = slicer.app.applicationLogic()
        selectionNode = appLogic.GetSelectionNode()
        selectionNode.SetReferenceActiveVolumeID(nodes.contrast_volume.GetID())
        appLogic.PropagateVolumeSelection()
        appLogic.FitSliceToBackground()
        slicer.modules.sequences.setToolBarActiveBrowserNode(nodes.browser)
        slicer.modules.sequences.showSequenceBrowser(nodes.browser)


def _toInt(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0


#
# DCEUSResponseDICOMPlugin
#


class DCEUSResponseDICOMPlugin:
    """This class is the 'hook' for Slicer to detect and recognize the plugin as a loadable scripted module."""

    def __init__(self, parent):
        # no tr (these strings are not translated because they are only visible for developers)
        parent.title = "DCEUSResponse DICOM Plugin"
        parent.categories = ["Developer Tools.DICOM Plugins"]
        parent.contributors = ["DCEUSResponse contributors (dceus-response project)"]
        parent.helpText = """
    Plugin to the DICOM module to load ultrasound cine clips for DCE-US quantification (DCEUSResponse).
    No module interface here, only in the DICOM module.
    """
        parent.acknowledgementText = """
    Part of the DCEUSResponse extension (Apache License 2.0).
    """

        # don't show this module - it only appears in the DICOM module
        parent.hidden = True

        # Add this plugin to the DICOM module's list for discovery when the module is created.
        # Since this module may be discovered before DICOM itself, create the list if it doesn't exist.
        try:
            slicer.modules.dicomPlugins
        except AttributeError:
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["DCEUSResponseDICOMPlugin"] = DCEUSResponseDICOMPluginClass
