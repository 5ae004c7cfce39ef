"""DCEUSResponse: quantitative dynamic contrast-enhanced ultrasound (DCE-US) in 3D Slicer.

The module is a thin Slicer front end of the engine package ``DCEUSResponseLib`` (installed next to
this file): the clip comes from a sequence browser (loaded from DICOM by the DCEUSResponse DICOM
plugin), the regions of interest from a segmentation drawn in the Segment Editor, and the results
(tables, chart, response table) go back into the scene through ``DCEUSResponseLib.scene``. Every
number is the engine's, exactly as the quantification contract defines it.

Only cheap imports happen here at module level (Slicer imports every scripted module at startup);
the engine's numerical modules (scipy) are imported when they are used.
"""
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Annotated

import vtk

import slicer
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceBrowserNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Minimum, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    import DCEUSResponseLib  # noqa: F401  (installed by the extension next to this file)
except ImportError:  # running from a source checkout: the engine is at the repository root, one level up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import DCEUSResponseLib  # noqa: F401
from DCEUSResponseLib.catalogue import parameter_names, unit
from DCEUSResponseLib.ceus.linearize import DEFAULT_DYNAMIC_RANGE_DB, MAX_DYNAMIC_RANGE_DB, MIN_DYNAMIC_RANGE_DB
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.errors import InputError

try:
    from DCEUSResponseWidgets.pet_ct_section import PetCtLogic, PetCtSection
except ImportError:  # a source checkout whose module folder is not on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from DCEUSResponseWidgets.pet_ct_section import PetCtLogic, PetCtSection

# The bolus family's models (DCEUSResponseLib.kinetics.registry), listed here so that importing this module does
# not import scipy at Slicer startup; Testing/Python/test_registry.py checks they agree.
MODEL_CHOICES = ("lognormal", "gamma", "ldrw", "fpt")
DEFAULT_MODEL = "lognormal"
DEFAULT_RESPONSE_RULE = "lassau2014"  # DCEUSResponseLib.longitudinal.response.DEFAULT_RULE
# The Python packages the module needs beyond those Slicer 5.12 bundles (pynrrd writes the map NRRDs
# of Export; slicerio the demo study's segmentation; threadpoolctl keeps BLAS to one thread inside the
# engine's own threads), one per line as pip requirements.
REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")
# Set when the user declined (or pip failed) at Apply: the analysis does not ask again this session.
_optionalPackagesDeclined = False


#
# DCEUSResponse
#


class DCEUSResponse(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DCE-US Response")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Ultrasound")]
        self.parent.dependencies = ["Sequences", "Segmentations"]
        self.parent.contributors = ["DCEUSResponse contributors (dceus-response project)"]
        self.parent.helpText = _("""
Quantitative dynamic contrast-enhanced ultrasound (DCE-US). Load a CEUS cine clip from the DICOM
database (it becomes a sequence browser), draw the lesions and a reference region (usually healthy
liver) as segments in the Segment Editor on one frame, set the display's dynamic range and the
injection time, and click Apply: the module linearises the log-compressed video to echo power,
extracts each region's time-intensity curve, fits a bolus model and reports the perfusion parameters
(PE, TTP, WiR, WoR, WiAUC, WoAUC, WiWoAUC, mTTl, ...), absolute and relative to the reference region.
Compare classifies each lesion's response against a previous exam's exported results.
See the <a href="https://github.com/dceus-response/SlicerDCEUSResponse">project page</a> and its
quantification contract for the exact definition of every number.
""")
        self.parent.acknowledgementText = _("""
DCEUSResponse is open source (Apache License 2.0). The default response rule follows
Lassau et al., Invest Radiol 2014. Built on 3D Slicer and its Sequences and Segmentations modules.
""")


#
# DCEUSResponseParameterNode
#


@parameterNodeWrapper
class DCEUSResponseParameterNode:
    """The parameters of the module (saved with the scene).

    inputBrowser - sequence browser of the CEUS clip.
    inputSegmentation - segmentation whose segments are the ROIs (drawn on the reference frame).
    referenceSegmentId - segment ID of the reference ROI ("" = none: absolute values only).
    dynamicRangeDb - log-compression dynamic range of the display, dB.
    injectionTimeS - clip time of the contrast injection, s.
    referenceFrame - frame the ROIs were drawn on.
    model - bolus model fitted to the curves.
    motionCompensation - compensate breathing motion (on the B-mode panel of a dual display).
    maps - compute per-pixel parametric maps of every parameter.
    responseRule - rule of Compare (lassau2014 or [absolute|relative]:PARAM:PERCENT).
    outputParameterTable, outputTicTable, outputChart - results of the last Apply.
    outputResponseTable - result of the last Compare.
    petCtCt, petCtPet - the CT and PET of the PET/CT section (as loaded from the DICOM database).
    petCtCeusPoints, petCtCtPoints - its landmark point lists, paired by label.
    """

    inputBrowser: vtkMRMLSequenceBrowserNode | None
    inputSegmentation: vtkMRMLSegmentationNode | None
    referenceSegmentId: str = ""
    dynamicRangeDb: Annotated[float, WithinRange(MIN_DYNAMIC_RANGE_DB, MAX_DYNAMIC_RANGE_DB)] = DEFAULT_DYNAMIC_RANGE_DB
    injectionTimeS: Annotated[float, WithinRange(-3600.0, 3600.0)] = 0.0
    referenceFrame: Annotated[int, Minimum(0)] = 0
    model: Annotated[str, Choice(MODEL_CHOICES)] = DEFAULT_MODEL
    motionCompensation: bool = True
    maps: bool = False
    responseRule: str = DEFAULT_RESPONSE_RULE
    outputParameterTable: vtkMRMLTableNode | None
    outputTicTable: vtkMRMLTableNode | None
    outputChart: vtkMRMLPlotChartNode | None
    outputResponseTable: vtkMRMLTableNode | None
    petCtCt: vtkMRMLScalarVolumeNode | None
    petCtPet: vtkMRMLScalarVolumeNode | None
    petCtCeusPoints: vtkMRMLMarkupsFiducialNode | None
    petCtCtPoints: vtkMRMLMarkupsFiducialNode | None


class ProcessingCancelled(Exception):
    """The user cancelled the analysis; nothing was added to the scene."""


#
# DCEUSResponseWidget
#


class DCEUSResponseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None
        self._updatingReferenceSegment = False
        self._userChoseReferenceFor = None  # segmentation whose reference the user picked (maybe None)
        self._processing = False
        self._analysis = None  # DCEUSResponseLib.ceus.pipeline.Analysis of the last Apply (for Compare and Export)
        self._study = None  # DCEUSResponseLib.scene.follow_up.StudyFolder of the last Load study
        self._followUpNodes = None  # its FollowUpNodes, refilled when another lesion is chosen
        self._mapNodes = {}  # parameter -> map volume of the last Apply (the PET/CT section places them)
        self._petCt = None  # the PET/CT section (DCEUSResponseWidgets/pet_ct_section.py)

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DCEUSResponse.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets. The .ui connects the top-level qMRMLWidget's
        # "mrmlSceneChanged(vtkMRMLScene*)" signal to each MRML widget's "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DCEUSResponseLogic()

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons and the widgets that are not bound to the parameter node by connectGui
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.editRoisButton.connect("clicked(bool)", self.onEditRoisButton)
        self.ui.useCurrentFrameButton.connect("clicked(bool)", self.onUseCurrentFrameButton)
        self.ui.showChartButton.connect("clicked(bool)", self.onShowChartButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.exportDicomDatabaseButton.connect("clicked(bool)", self.onExportDicomDatabaseButton)
        self.ui.referenceSegmentSelector.connect("currentSegmentChanged(QString)", self.onReferenceSegmentChanged)
        self.ui.baselineFolderPathLineEdit.connect("currentPathChanged(QString)", self._updateButtonStates)
        self.ui.exportFolderPathLineEdit.connect("currentPathChanged(QString)", self._updateButtonStates)
        self.ui.studyFolderPathLineEdit.connect("currentPathChanged(QString)", self._updateButtonStates)
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudyButton)
        self.ui.followUpPatientComboBox.connect("currentIndexChanged(int)", self.onFollowUpPatientChanged)
        self.ui.followUpLesionComboBox.connect("currentIndexChanged(int)", self.onFollowUpLesionChanged)
        self.ui.openExamSceneButton.connect("clicked(bool)", self.onOpenExamSceneButton)
        self._petCt = PetCtSection(self)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)
        self._analysis = None
        self._followUpNodes = None  # the scene's nodes go with it
        self._mapNodes = {}
        if self._petCt is not None:
            self._petCt.reset()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())

        # Select default inputs if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputBrowser:
            browserNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceBrowserNode")
            if browserNode:
                self._parameterNode.inputBrowser = browserNode
        if not self._parameterNode.inputSegmentation:
            segmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if segmentationNode:
                self._parameterNode.inputSegmentation = segmentationNode

    def setParameterNode(self, inputParameterNode: DCEUSResponseParameterNode | None) -> None:
        """Set and observe the parameter node (the GUI follows it and writes into it)."""
        if self._parameterNode == inputParameterNode:
            return
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # In the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # widget that connectGui binds to a parameter.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Update the widgets that connectGui does not handle, then the buttons."""
        segmentationNode = self._parameterNode.inputSegmentation if self._parameterNode else None
        self._observeSegmentation(segmentationNode)
        self._updateReferenceSegmentSelector()
        self._updateButtonStates()

    def _observeSegmentation(self, segmentationNode) -> None:
        """Follow segments being added or removed: they decide whether Apply is possible."""
        if segmentationNode == self._observedSegmentation:
            return
        if self._observedSegmentation is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved):
                self.removeObserver(self._observedSegmentation, event, self.onSegmentsChanged)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved):
                self.addObserver(segmentationNode, event, self.onSegmentsChanged)

    def onSegmentsChanged(self, caller=None, event=None) -> None:
        self._updateReferenceSegmentSelector()
        self._updateButtonStates()

    def _updateReferenceSegmentSelector(self) -> None:
        """Show the parameter node's reference segment in the segment selector (not bound by connectGui)."""
        selector = self.ui.referenceSegmentSelector
        parameterNode = self._parameterNode
        segmentationNode = parameterNode.inputSegmentation if parameterNode else None
        self._updatingReferenceSegment = True
        try:
            if selector.currentNode() != segmentationNode:
                selector.setCurrentNode(segmentationNode)
            if parameterNode is None or segmentationNode is None:
                return
            segmentId = parameterNode.referenceSegmentId
            if segmentId and not segmentationNode.GetSegmentation().GetSegment(segmentId):
                segmentId = ""  # the reference belonged to another segmentation
            if not segmentId and self._userChoseReferenceFor is not segmentationNode:
                segmentId = self.logic.defaultReferenceSegmentId(segmentationNode)  # "liver", if there is one
            if selector.currentSegmentID() != segmentId:
                selector.setCurrentSegmentID(segmentId)
            if parameterNode.referenceSegmentId != segmentId:
                parameterNode.referenceSegmentId = segmentId
        finally:
            self._updatingReferenceSegment = False

    def onReferenceSegmentChanged(self, segmentId) -> None:
        segmentId = segmentId or ""
        if self._updatingReferenceSegment or not self._parameterNode \
                or segmentId == self._parameterNode.referenceSegmentId:
            return
        self._userChoseReferenceFor = self._parameterNode.inputSegmentation
        self._parameterNode.referenceSegmentId = segmentId

    def _updateButtonStates(self, *args) -> None:
        parameterNode = self._parameterNode
        problem = self.logic.inputProblem(parameterNode.inputBrowser, parameterNode.inputSegmentation) \
            if parameterNode else _("No parameter node.")
        self.ui.applyButton.enabled = problem is None and not self._processing
        self.ui.applyButton.toolTip = problem if problem else _("Quantify the ROIs of the clip.")
        hasBrowser = bool(parameterNode and parameterNode.inputBrowser)
        self.ui.editRoisButton.enabled = hasBrowser
        self.ui.useCurrentFrameButton.enabled = hasBrowser
        self.ui.showChartButton.enabled = bool(parameterNode and parameterNode.outputChart)
        hasAnalysis = self._analysis is not None
        self.ui.compareButton.enabled = hasAnalysis and bool(self.ui.baselineFolderPathLineEdit.currentPath)
        self.ui.compareButton.toolTip = _("Compare the current analysis (follow-up) with the previous exam's results.") \
            if hasAnalysis else _("Apply first: Compare uses the current analysis as the follow-up.")
        self.ui.exportButton.enabled = hasAnalysis and bool(self.ui.exportFolderPathLineEdit.currentPath)
        self.ui.exportDicomDatabaseButton.enabled = hasAnalysis
        self.ui.loadStudyButton.enabled = bool(self.ui.studyFolderPathLineEdit.currentPath)
        self.ui.openExamSceneButton.enabled = self._study is not None and self.ui.followUpExamComboBox.count > 0
        if self._petCt is not None:
            self._petCt.updateButtonStates()

    def _setStatus(self, text: str, error: bool = False) -> None:
        """Messages go to the module panel's status label."""
        self.ui.statusLabel.text = (_("Error: {message}").format(message=text) if error else text)

    @contextlib.contextmanager
    def _errorDisplay(self, message: str):
        """The module's one error path, the module template's: ``slicer.util.tryWithErrorDisplay``
        shows the error (and re-raises it, so the traceback reaches the Python console); the status
        label keeps the one-line reason."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                yield
        except Exception as error:
            self._setStatus(" ".join(str(error).split()), error=True)
            raise

    def onApplyButton(self) -> None:
        """Run the analysis with a cancellable progress dialog; results go to the scene and the panel."""
        with self._errorDisplay(_("The module's Python packages could not be checked.")):
            ensurePythonPackages(required=False)  # on first use, as the template; the analysis runs either way
        parameterNode = self._parameterNode
        self._processing = True
        self._updateButtonStates()
        self._setStatus(_("Analysing..."))
        progressDialog = slicer.util.createProgressDialog(
            windowTitle=_("DCE-US analysis"), labelText=_("Reading the clip..."), maximum=100)

        def onProgress(fraction, message):
            progressDialog.labelText = message
            progressDialog.value = int(round(100 * fraction))
            slicer.app.processEvents()
            return progressDialog.wasCanceled

        try:
            with self._errorDisplay(_("The analysis failed.")):
                try:
                    options = self.logic.analysisOptions(parameterNode)
                    outputs = self.logic.process(parameterNode.inputBrowser, parameterNode.inputSegmentation,
                                                 options, progressCallback=onProgress)
                except ProcessingCancelled:  # the user's choice, not an error
                    outputs = None
        finally:
            progressDialog.close()
            self._processing = False
            self._updateButtonStates()
        if outputs is None:
            self._setStatus(_("Cancelled: nothing was added to the scene."))
            return

        self._analysis = outputs.analysis
        self._mapNodes = outputs.mapNodes
        with slicer.util.NodeModify(parameterNode):
            parameterNode.outputParameterTable = outputs.resultNodes.parameter_table
            parameterNode.outputTicTable = outputs.resultNodes.tic_table
            parameterNode.outputChart = outputs.resultNodes.chart
        slicer.modules.plots.logic().ShowChartInLayout(parameterNode.outputChart)
        peMap = outputs.mapNodes.get("PE")
        if peMap is not None:
            # The PE map over the clip, as radiologists read parametric images.
            slicer.util.setSliceViewerLayers(background=self.logic.sourceVolumeNode(parameterNode.inputBrowser),
                                             foreground=peMap, foregroundOpacity=0.6)
            # vtkSlicerColorLogic::AddDefaultColorLegendDisplayNode (Modules/Loadable/Colors/Logic)
            slicer.modules.colors.logic().AddDefaultColorLegendDisplayNode(peMap)
        self.ui.resultsCollapsibleButton.collapsed = False
        self._setStatus(self.logic.summary(outputs.analysis))
        self._updateButtonStates()

    def onEditRoisButton(self) -> None:
        """Open the Segment Editor on the clip's current frame with the ROI segmentation (created if needed)."""
        parameterNode = self._parameterNode
        browserNode = parameterNode.inputBrowser
        volumeNode = self.logic.sourceVolumeNode(browserNode)
        if volumeNode is None:
            self._setStatus(_("the clip's sequence browser shows no volume."), error=True)
            return
        with self._errorDisplay(_("Opening the Segment Editor failed.")):
            segmentationNode = parameterNode.inputSegmentation
            if segmentationNode is None:
                segmentationNode = self.logic.createRoiSegmentation(browserNode)
                parameterNode.inputSegmentation = segmentationNode
            frame = max(0, browserNode.GetSelectedItemNumber())
            parameterNode.referenceFrame = frame
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.SegmentEditorWidget.editor
            editor.setSegmentationNode(segmentationNode)
            editor.setSourceVolumeNode(volumeNode)
        self._setStatus(_("Draw one segment per ROI on frame {frame} (the reference frame), then come back and "
                          "click Apply.").format(frame=frame))

    def onUseCurrentFrameButton(self) -> None:
        browserNode = self._parameterNode.inputBrowser
        if browserNode is not None:
            self._parameterNode.referenceFrame = max(0, browserNode.GetSelectedItemNumber())

    def onShowChartButton(self) -> None:
        if self._parameterNode and self._parameterNode.outputChart:
            slicer.modules.plots.logic().ShowChartInLayout(self._parameterNode.outputChart)

    def onCompareButton(self) -> None:
        parameterNode = self._parameterNode
        with self._errorDisplay(_("The comparison failed.")):
            comparison = self.logic.compareWithFolder(self.ui.baselineFolderPathLineEdit.currentPath, self._analysis,
                                                      rule=parameterNode.responseRule or DEFAULT_RESPONSE_RULE,
                                                      responseTableNode=parameterNode.outputResponseTable)
        self.ui.baselineFolderPathLineEdit.addCurrentPathToHistory()
        parameterNode.outputResponseTable = comparison.tableNode
        self._setStatus(self.logic.responseSummary(comparison.response))

    def ensurePackages(self) -> None:
        """The module's Python requirements, asked for where an action needs them (the PET/CT section's
        Measure: its files are NRRD); a decline at Apply does not stop that question."""
        ensurePythonPackages()

    def onExportButton(self) -> None:
        folder = self.ui.exportFolderPathLineEdit.currentPath
        with self._errorDisplay(_("The export failed.")):
            self.ensurePackages()  # the map NRRDs need pynrrd, which Slicer does not bundle
            withDicom = self.ui.exportDicomCheckBox.checked
            self.logic.exportResults(self._analysis, folder, dicom=withDicom)
        self.ui.exportFolderPathLineEdit.addCurrentPathToHistory()
        written = _("results.json, parameters.csv, tic.csv and the DICOM objects in dicom/") if withDicom \
            else _("results.json, parameters.csv, tic.csv")
        self._setStatus(_("Results written to {folder} ({files}).").format(folder=os.path.abspath(folder),
                                                                          files=written))

    def onExportDicomDatabaseButton(self) -> None:
        with self._errorDisplay(_("The export to the DICOM database failed.")):
            imported = self.logic.exportToDicomDatabase(self._analysis)
        self._setStatus(_("{count} DICOM objects (parametric maps, segmentation, measurement report) imported "
                          "into the DICOM database.").format(count=len(imported)))

    # -- follow-up: a study folder's course of one lesion -------------------------------------

    def onLoadStudyButton(self) -> None:
        with self._errorDisplay(_("Loading the study failed.")):
            study = self.logic.loadStudy(self.ui.studyFolderPathLineEdit.currentPath)
        self.ui.studyFolderPathLineEdit.addCurrentPathToHistory()
        self._study = study
        _fillComboBox(self.ui.followUpPatientComboBox, study.patients())
        self.onFollowUpPatientChanged()
        self._setStatus(_("Study {folder}: {count} patient(s).").format(folder=study.folder,
                                                                       count=len(study.patients())))

    def onFollowUpPatientChanged(self, index=None) -> None:
        patient = self.ui.followUpPatientComboBox.currentText
        if self._study is None or not patient:
            return
        _fillComboBox(self.ui.followUpExamComboBox, self._study.exams(patient))
        _fillComboBox(self.ui.followUpLesionComboBox, self._study.lesion_names(patient))
        self.onFollowUpLesionChanged()
        self._updateButtonStates()

    def onFollowUpLesionChanged(self, index=None) -> None:
        patient, lesion = self.ui.followUpPatientComboBox.currentText, self.ui.followUpLesionComboBox.currentText
        if self._study is None or not patient or not lesion:
            return
        with self._errorDisplay(_("Showing the lesion's course failed.")):
            self._followUpNodes = self.logic.showFollowUp(self._study, patient, lesion, self._followUpNodes)
        self.ui.followUpTableView.setMRMLTableNode(self._followUpNodes.response_table)
        slicer.modules.plots.logic().ShowChartInLayout(self._followUpNodes.chart)

    def onOpenExamSceneButton(self) -> None:
        patient, exam = self.ui.followUpPatientComboBox.currentText, self.ui.followUpExamComboBox.currentText
        with self._errorDisplay(_("Opening the exam's scene failed.")):
            paths = self.logic.openExamScene(self._study, patient, exam)
        self._setStatus(_("Added to the scene: {files}.").format(files=", ".join(paths)))


def _fillComboBox(comboBox, items) -> None:
    """Replace a QComboBox's items without a signal per item (its owner refreshes once afterwards)."""
    wasBlocked = comboBox.blockSignals(True)
    try:
        comboBox.clear()
        for item in items:
            comboBox.addItem(item)
    finally:
        comboBox.blockSignals(wasBlocked)


#
# DCEUSResponseLogic
#


@dataclass
class AnalysisOutputs:
    """What :meth:`DCEUSResponseLogic.process` returns."""

    analysis: object  # DCEUSResponseLib.ceus.results.Analysis
    resultNodes: object | None  # DCEUSResponseLib.scene.tables.ResultNodes; None without addResults
    mapNodes: dict  # parameter name -> map volume (empty without maps)


@dataclass
class ComparisonOutputs:
    """What :meth:`DCEUSResponseLogic.compareWithFolder` returns."""

    response: dict  # the contract's response.json content
    tableNode: object  # vtkMRMLTableNode, one row per ROI


class DCEUSResponseLogic(ScriptedLoadableModuleLogic):
    """The analysis, usable without the GUI (Python console, scripts, tests); it delegates every step
    to the engine (``DCEUSResponseLib``) and returns what it made.

    >>> logic = DCEUSResponseLogic()
    >>> options = AnalysisOptions(dynamic_range_db=50.0, injection_time_s=2.0, reference="liver")
    >>> outputs = logic.process(browserNode, segmentationNode, options)
    >>> logic.exportResults(outputs.analysis, "/path/to/exam1")
    >>> comparison = logic.compareWithFolder("/path/to/exam0", outputs.analysis)

    Bad input raises ``DCEUSResponseLib.errors.InputError`` with a one-line message naming the problem.
    The engine's scene, pipeline and export modules are imported where they are used: they import
    scipy, which Slicer must not load at startup.
    """

    def getParameterNode(self):
        return DCEUSResponseParameterNode(super().getParameterNode())

    # -- inputs ------------------------------------------------------------------------------

    @staticmethod
    def inputProblem(browserNode, segmentationNode):
        """Why Apply cannot run with these inputs (a translated sentence), or None when it can."""
        if browserNode is None:
            return _("Select the CEUS clip (its sequence browser).")
        if browserNode.GetNumberOfItems() < 2:
            return _("The selected clip has fewer than 2 frames.")
        if segmentationNode is None:
            return _("Select the segmentation holding the ROIs (or click Edit ROIs).")
        if segmentationNode.GetSegmentation().GetNumberOfSegments() == 0:
            return _("The segmentation has no segment: draw the ROIs first.")
        return None

    @staticmethod
    def defaultReferenceSegmentId(segmentationNode) -> str:
        """The segment named like a reference region ("liver", "reference", "parenchyma"), or ""."""
        if segmentationNode is None:
            return ""
        segmentation = segmentationNode.GetSegmentation()
        for keyword in ("liver", "reference", "parenchyma"):
            for index in range(segmentation.GetNumberOfSegments()):
                segmentId = segmentation.GetNthSegmentID(index)
                if keyword in (segmentation.GetSegment(segmentId).GetName() or "").lower():
                    return segmentId
        return ""

    @staticmethod
    def sourceVolumeNode(browserNode):
        """The volume the sequence browser shows for its master sequence (the contrast panel: draw ROIs on it)."""
        if browserNode is None or browserNode.GetMasterSequenceNode() is None:
            return None
        return browserNode.GetProxyNode(browserNode.GetMasterSequenceNode())

    @staticmethod
    def createRoiSegmentation(browserNode, name=None):
        """An empty segmentation for the ROIs of the clip, on the clip's pixel grid over the whole frame
        (so segments can be drawn on either panel of a dual display), referencing the contrast panel."""
        from DCEUSResponseLib.scene import clip_nodes, segmentation

        clip = clip_nodes.clip_from_browser(browserNode)
        volumeNode = DCEUSResponseLogic.sourceVolumeNode(browserNode)
        return segmentation.add_roi_segmentation(slicer.mrmlScene, [], clip, volumeNode,
                                                 name=name or slicer.mrmlScene.GenerateUniqueName(_("ROIs")))

    @staticmethod
    def analysisOptions(parameterNode) -> AnalysisOptions:
        """The engine's options from the module's parameters (the reference ROI by its segment's name)."""
        reference = None
        if parameterNode.referenceSegmentId:
            segmentationNode = parameterNode.inputSegmentation
            segment = segmentationNode.GetSegmentation().GetSegment(parameterNode.referenceSegmentId) \
                if segmentationNode is not None else None
            if segment is None:
                raise InputError(f"reference segment {parameterNode.referenceSegmentId!r} is not in the segmentation")
            reference = segment.GetName()
        return AnalysisOptions(dynamic_range_db=float(parameterNode.dynamicRangeDb),
                               injection_time_s=float(parameterNode.injectionTimeS),
                               reference_frame=int(parameterNode.referenceFrame), model=str(parameterNode.model),
                               reference=reference, motion_compensation=bool(parameterNode.motionCompensation),
                               maps=bool(parameterNode.maps))

    # -- analysis ----------------------------------------------------------------------------

    def process(self, browserNode, segmentationNode, options: AnalysisOptions, addResults=True,
                progressCallback=None) -> AnalysisOutputs:
        """Quantify every segment of ``segmentationNode`` on the clip of ``browserNode``.

        :param browserNode: vtkMRMLSequenceBrowserNode of the clip (DCEUSResponse DICOM plugin or
            ``DCEUSResponseLib.scene.clip_nodes.add_clip_sequences``).
        :param segmentationNode: vtkMRMLSegmentationNode, one 2D segment per ROI, drawn on the reference frame.
        :param options: the engine's ``AnalysisOptions`` (:meth:`analysisOptions` builds them from the panel).
        :param addResults: add the TIC and parameter tables, the chart and the maps to the scene.
        :param progressCallback: ``callback(fraction, message) -> bool``; returning True cancels
            (ProcessingCancelled is raised before anything is added to the scene).
        """
        from DCEUSResponseLib.ceus.pipeline import analyze
        from DCEUSResponseLib.scene import clip_nodes, map_volumes, segmentation, tables

        def step(fraction, message):
            if progressCallback is not None and progressCallback(fraction, message):
                raise ProcessingCancelled()

        problem = self.inputProblem(browserNode, segmentationNode)
        if problem:
            raise InputError(problem)
        step(0.02, _("Reading the clip..."))
        clip = clip_nodes.clip_from_browser(browserNode)
        step(0.20, _("Reading the ROIs..."))
        rois = segmentation.rois_from_segmentation(segmentationNode, clip)
        step(0.30, _("Fitting {count} time-intensity curves...").format(count=len(rois)))
        # The engine reports each of its steps; Cancel takes effect between them.
        engineSteps = iter(range(1, 1000))
        analysis = analyze(clip, rois, options,
                           progress=lambda message: step(0.30 + 0.58 * (1.0 - 0.8 ** next(engineSteps)), message))
        step(0.90, _("Adding the results to the scene..."))
        resultNodes, mapNodes = None, {}
        if addResults:
            prefix = f"{browserNode.GetName()} "
            resultNodes = tables.add_analysis_results(slicer.mrmlScene, analysis, name_prefix=prefix,
                                                      segmentation_node=segmentationNode)
            if analysis.maps is not None:
                mapNodes = map_volumes.add_parameter_maps(slicer.mrmlScene, analysis.maps, name_prefix=prefix,
                                                          frame_spacing_mm=clip.frame_spacing_mm)
        if progressCallback is not None:
            progressCallback(1.0, _("Done."))
        for warning in analysis.warnings:
            logging.warning(f"DCEUSResponse: {warning}")
        return AnalysisOutputs(analysis, resultNodes, mapNodes)

    @staticmethod
    def summary(analysis) -> str:
        """One short paragraph for the status label: ROI statuses and the engine's warnings."""
        counts = {}
        for roi in analysis.rois.values():
            counts[roi.fit.status] = counts.get(roi.fit.status, 0) + 1
        parts = ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in counts.items())
        text = _("{count} ROIs quantified ({parts}).").format(count=len(analysis.rois), parts=parts)
        if analysis.options.reference is None:
            text += " " + _("No reference ROI: relative values are empty.")
        if analysis.warnings:
            text += " " + _("Warnings: {warnings}").format(warnings=" | ".join(analysis.warnings))
        return text

    # -- comparison and export ---------------------------------------------------------------

    @staticmethod
    def compareWithFolder(baselineFolder, followup, rule=DEFAULT_RESPONSE_RULE,
                          responseTableNode=None) -> ComparisonOutputs:
        """Treatment response of ``followup`` against a previous exam's results folder.

        :param baselineFolder: folder holding the previous exam's ``results.json`` (exportResults or the
            command line's ``analyze --out``).
        :param followup: the current ``Analysis`` (from process) or another results folder.
        :param rule: response rule (``lassau2014`` or ``[absolute|relative]:PARAM:PERCENT``).
        :param responseTableNode: table node to refill (a new one when None).
        """
        from DCEUSResponseLib.export.contract import results_json
        from DCEUSResponseLib.longitudinal.response import (
            ResponseRule,
            check_shared_rois,
            compare_results,
            read_results,
        )
        from DCEUSResponseLib.scene.tables import add_response_table

        if followup is None:
            raise InputError("no follow-up analysis: click Apply first")
        if not baselineFolder:
            raise InputError("choose the previous exam's results folder")
        parsedRule = ResponseRule.parse(rule or DEFAULT_RESPONSE_RULE)
        baseline = read_results(baselineFolder)
        if isinstance(followup, (str, os.PathLike)):
            followupResults, followupName = read_results(os.fspath(followup)), os.path.abspath(followup)
        else:  # an Analysis in memory: its results.json content, without writing it
            followupResults, followupName = results_json(followup), followup.clip.source
        check_shared_rois(baseline, followupResults, baselineFolder, followupName)
        response = compare_results(baseline, followupResults, parsedRule, os.path.abspath(baselineFolder),
                                   followupName)
        tableNode = add_response_table(slicer.mrmlScene, response, responseTableNode,
                                       name=slicer.mrmlScene.GenerateUniqueName(_("DCE-US response")))
        return ComparisonOutputs(response, tableNode)

    @staticmethod
    def responseSummary(response) -> str:
        lines = [f"{name}: {roi['classification']}" for name, roi in response["rois"].items()]
        text = "; ".join(lines) + ". " + (response.get("rule_definition") or "")
        if response.get("unmatched_rois"):
            text += " " + _("Only in one exam: {names}.").format(names=", ".join(response["unmatched_rois"]))
        for warning in response.get("warnings") or ():  # identities, settings (an assumed dynamic range, ...)
            logging.warning(f"DCEUSResponse compare: {warning}")
            text += " " + _("Warning: {warning}.").format(warning=warning)
        return text

    # -- follow-up ------------------------------------------------------------------------------

    @staticmethod
    def loadStudy(folder):
        """The tables of a ``study`` output folder (``DCEUSResponseLib.scene.follow_up.StudyFolder``)."""
        from DCEUSResponseLib.scene.follow_up import read_study_folder

        if not folder:
            raise InputError("choose a study output folder (it holds study.json)")
        return read_study_folder(folder)

    @staticmethod
    def showFollowUp(study, patient, lesion, nodes=None):
        """The trajectory table and chart and the response table of ``lesion`` in ``slicer.mrmlScene``
        (``FollowUpNodes``); ``nodes`` from an earlier call are refilled when still in the scene."""
        from DCEUSResponseLib.scene.follow_up import add_follow_up_nodes

        if nodes is not None and not all(slicer.mrmlScene.IsNodePresent(node) for node in
                                         (nodes.trajectory_table, nodes.chart, nodes.response_table)):
            nodes = None  # the user deleted one of them: make new ones
        return add_follow_up_nodes(slicer.mrmlScene, study, patient, lesion, nodes)

    @staticmethod
    def openExamScene(study, patient, exam):
        """Add the exam's scene bundles to the current scene (``slicer.util.loadScene``, which imports a
        bundle without clearing the scene); returns their paths."""
        if study is None:
            raise InputError("load a study first")
        paths = study.exam_scenes(patient, exam)
        if not paths:
            raise InputError(f"no Slicer scene (.mrb) for exam {exam} of patient {patient}: the study's clips "
                             "were analysed without --scene", os.path.join(study.folder, "exams", patient, exam))
        for path in paths:
            slicer.util.loadScene(path)
        return paths

    @staticmethod
    def exportResults(analysis, folder, dicom=False):
        """Write the contract's ``results.json``, ``parameters.csv`` and ``tic.csv`` atomically into ``folder``;
        with ``dicom``, also the DICOM objects into ``folder/dicom`` (a Parametric Map per map, the SEG of
        the ROIs, the TID 1500 report; ``analyze --dicom``), in the same staged write.

        :return: the written paths.
        """
        from DCEUSResponseLib.export.contract import write_analysis
        from DCEUSResponseLib.export.dicom_outputs import analysis_dicom_outputs, dicom_writers

        if analysis is None:
            raise InputError("no analysis to export: click Apply first")
        if not folder:
            raise InputError("choose an output folder")
        extra = []
        if dicom:  # the exam is the folder's name, as for analyze --dicom
            timePoint = os.path.basename(os.path.normpath(os.path.abspath(folder)))
            extra = dicom_writers(analysis_dicom_outputs(analysis, time_point=timePoint))
        return write_analysis(analysis, folder, extra_writers=extra)

    @staticmethod
    def exportToDicomDatabase(analysis, dicomDatabase=None, timePoint=None):
        """Import the analysis's DICOM objects (a Parametric Map per map, the SEG of the ROIs, the TID 1500
        report) into Slicer's DICOM database (default ``slicer.dicomDatabase``).

        They are written into a temporary folder in Slicer's temporary path, imported with
        ``DICOMLib.DICOMUtils.importDicom(folder, database, copyFiles=True)`` (copied: the folder is then
        removed) and appear under the clip's patient and study. ``timePoint`` labels the exam in the
        report (default: the clip's Study Date).

        :return: SOP Instance UID of each imported object, by file name.
        """
        from DICOMLib import DICOMUtils

        from DCEUSResponseLib.export.dicom_outputs import analysis_dicom_outputs, write_datasets

        if analysis is None:
            raise InputError("no analysis to export: click Apply first")
        database = dicomDatabase if dicomDatabase is not None else slicer.dicomDatabase
        if database is None or not database.isOpen:
            raise InputError("the DICOM database is not open: open or create one in the DICOM module")
        timePoint = timePoint or analysis.clip.uids.get("StudyDate") or os.path.basename(analysis.clip.source)
        source = analysis.clip.source
        if not os.path.exists(source) and analysis.clip.uids.get("SOPInstanceUID"):
            # a clip loaded from the database: its file is where the database keeps the instance
            source = database.fileForInstance(analysis.clip.uids["SOPInstanceUID"]) or source
        outputs = analysis_dicom_outputs(analysis, time_point=timePoint, source_clip_path=source)
        folder = tempfile.mkdtemp(prefix="DCEUSResponse-dicom-", dir=slicer.app.temporaryPath)
        try:
            write_datasets(outputs, folder)
            if not DICOMUtils.importDicom(folder, database, copyFiles=True):
                raise InputError("the DICOM database did not import the objects (details in the Python console)")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {name: str(dataset.SOPInstanceUID) for name, dataset in outputs.datasets.items()}


def ensurePythonPackages(requester="DCEUSResponse", inTest=False, required=True):
    """Install the module's missing Python packages (``Resources/requirements.txt``) on first use.

    Slicer 5.12's scripted-module template: ``slicer.packaging.pip_ensure`` of the requirements read by
    ``slicer.packaging.load_requirements`` in ``onApplyButton``; it asks the user before installing (in a
    test it installs without asking) and does nothing when everything is there. The analysis runs
    without them (threadpoolctl only keeps BLAS to one thread inside the engine's threads), so it passes
    ``required=False``: a user who declines is asked again at Export, which needs pynrrd.
    """
    global _optionalPackagesDeclined
    if not required and _optionalPackagesDeclined:
        return
    import slicer.packaging

    requirements = slicer.packaging.load_requirements(REQUIREMENTS_FILE)
    try:
        slicer.packaging.pip_ensure(requirements, requester=requester, prompt_install=not inTest,
                                    prompt_restart=not inTest, skip_in_testing=not inTest, show_progress=not inTest)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:  # declined (RuntimeError), or pip failed
        if required:
            raise
        _optionalPackagesDeclined = True  # not asked again at Apply in this session; Export still asks
        logging.warning(f"{requester}: Python packages not installed ({error}); the analysis runs without them")


#
# DCEUSResponseTest
#


class DCEUSResponseTest(ScriptedLoadableModuleTest):
    """End-to-end test on the bundled synthetic demo study (baseline and follow-up of one patient).

    Tolerances are the engine's (Testing/Python/test_accuracy.py): amplitudes 10 %, times 5 % or 0.5 s.
    """

    # the bolus parameters in a.u. (amplitudes, rates, areas) and in seconds, from the catalogue
    AMPLITUDES = tuple(name for name in parameter_names("bolus") if "a.u." in unit(name))
    TIMES = tuple(name for name in parameter_names("bolus") if unit(name) == "s")
    AMPLITUDE_TOLERANCE = 0.10
    TIME_TOLERANCE, TIME_TOLERANCE_S = 0.05, 0.5

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_DCEUSResponse_demoStudy()
        self.setUp()
        self.test_DCEUSResponse_dicomPlugin()
        self.setUp()
        self.test_DCEUSResponse_petCt()

    # -- helpers -----------------------------------------------------------------------------

    def _buildDemoStudy(self):
        """The demo study in a fresh temporary folder: (folder, {exam: paths}, truth)."""
        ensurePythonPackages(inTest=True)
        from DCEUSResponseLib.app.demo import build_demo_study

        folder = tempfile.mkdtemp(prefix="DCEUSResponseTest-", dir=slicer.app.temporaryPath)
        study = build_demo_study(os.path.join(folder, "study"))
        with open(os.path.join(folder, "study", "truth.json"), encoding="utf-8") as stream:
            truth = json.load(stream)
        return folder, study, truth

    def _checkAgainstTruth(self, analysis, truth, exam):
        failures = []
        for name, expected in truth.items():
            roi = analysis.rois[name]
            if expected["parameters"] is None:  # necrosis: no perfusion at all
                self.assertEqual(roi.fit.status, "no_enhancement", f"{exam} {name}: {roi.fit.reason}")
                self.assertIsNone(roi.parameters["PE"])
                continue
            self.assertEqual(roi.fit.status, "ok", f"{exam} {name}: {roi.fit.reason}")
            for parameter in self.AMPLITUDES:
                value, true = roi.parameters[parameter], expected["parameters"][parameter]
                if abs(value / true - 1) > self.AMPLITUDE_TOLERANCE:
                    failures.append(f"{exam} {name} {parameter}: {value:.4g} vs {true:.4g}")
            for parameter in self.TIMES:
                value, true = roi.parameters[parameter], expected["parameters"][parameter]
                if abs(value - true) > max(self.TIME_TOLERANCE * abs(true), self.TIME_TOLERANCE_S):
                    failures.append(f"{exam} {name} {parameter}: {value:.3f} s vs {true:.3f} s")
        self.assertFalse(failures, "\n".join(failures))

    # -- tests -------------------------------------------------------------------------------

    def test_DCEUSResponse_demoStudy(self):
        """Load both exams of the demo study as the DCEUSResponse DICOM plugin does, draw the ROIs from
        the demo's segmentation, analyse through the module logic, check against the truth, export,
        compare and check each lesion's classification; export with the DICOM objects, and into a
        temporary DICOM database."""
        from DICOMLib import DICOMUtils

        from DCEUSResponseLib.app.demo import DYNAMIC_RANGE_DB, EXAMS, INJECTION_TIME_S, REFERENCE
        from DCEUSResponseLib.ceus.layout import find_layout
        from DCEUSResponseLib.io.dicom_us import read_clip
        from DCEUSResponseLib.io.masks import read_roi_masks
        from DCEUSResponseLib.scene import clip_nodes, segmentation

        self.delayDisplay("Building the demo study")
        folder, study, truth = self._buildDemoStudy()
        try:
            logic = DCEUSResponseLogic()
            analyses = {}
            for exam in EXAMS:
                self.delayDisplay(f"Analysing the {exam} exam")
                clip = read_clip(study[exam]["clip"])
                nodes = clip_nodes.add_clip_sequences(slicer.mrmlScene, clip, find_layout(clip), name=f"CEUS {exam}")
                self.assertEqual(nodes.browser.GetNumberOfItems(), clip.n_frames)

                # The ROIs of the demo's rois.seg.nrrd, read by the engine and put into the scene ...
                rois = read_roi_masks([study[exam]["segmentation"]], (clip.rows, clip.columns),
                                      clip.frame_spacing_mm)
                segmentationNode = segmentation.add_roi_segmentation(slicer.mrmlScene, rois, clip, nodes.contrast_volume,
                                                             name=f"ROIs {exam}")
                # ... and the same file read by Slicer itself must give the same pixels (geometry convention).
                loadedNode = slicer.util.loadSegmentation(study[exam]["segmentation"])
                fromSlicer = {roi.name: roi.mask for roi in segmentation.rois_from_segmentation(loadedNode, clip)}
                for roi in rois:
                    self.assertIn(roi.name, fromSlicer)
                    self.assertTrue((fromSlicer[roi.name] == roi.mask).all(), f"{exam} {roi.name}: masks differ")
                slicer.mrmlScene.RemoveNode(loadedNode)

                referenceId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(REFERENCE)
                self.assertTrue(referenceId)
                self.assertEqual(logic.defaultReferenceSegmentId(segmentationNode), referenceId)
                parameterNode = logic.getParameterNode()
                parameterNode.inputBrowser, parameterNode.inputSegmentation = nodes.browser, segmentationNode
                parameterNode.referenceSegmentId = referenceId
                parameterNode.dynamicRangeDb, parameterNode.injectionTimeS = DYNAMIC_RANGE_DB, INJECTION_TIME_S
                options = logic.analysisOptions(parameterNode)
                self.assertEqual(options.reference, REFERENCE)
                outputs = logic.process(nodes.browser, segmentationNode, options)
                analysis = outputs.analysis
                self._checkAgainstTruth(analysis, truth["exams"][exam], exam)
                self.assertEqual(analysis.options.reference, REFERENCE)
                self.assertEqual(analysis.layout.display, "dual")

                resultNodes = outputs.resultNodes
                self.assertIsNotNone(resultNodes.parameter_table)
                self.assertIsNotNone(resultNodes.tic_table)
                self.assertIsNotNone(resultNodes.chart)
                self.assertEqual(resultNodes.parameter_table.GetNumberOfRows(), len(analysis.rois))

                written = logic.exportResults(analysis, os.path.join(folder, exam), dicom=True)
                self.assertTrue(any(path.endswith("results.json") for path in written))
                self.assertTrue(any(path.endswith(os.path.join("dicom", "SR_measurements.dcm")) for path in written))
                with DICOMUtils.TemporaryDICOMDatabase(os.path.join(folder, f"{exam}-database")) as database:
                    imported = logic.exportToDicomDatabase(analysis, database, timePoint=exam)
                    for name, uid in imported.items():  # copied into the database, the temporary folder gone
                        self.assertTrue(os.path.isfile(database.fileForInstance(uid)), name)
                analyses[exam] = analysis

            self.delayDisplay("Comparing follow-up with baseline")
            comparison = logic.compareWithFolder(os.path.join(folder, "baseline"), analyses["followup"])
            response = comparison.response
            classes = {name: roi["classification"] for name, roi in response["rois"].items()}
            self.assertEqual(classes["lesion1"], "responder")
            self.assertEqual(classes["lesion2"], "non-responder")
            self.assertEqual(classes["necrosis"], "not-evaluable")
            self.assertEqual(classes["liver"], "not-evaluable")  # the reference ROI itself
            # the same comparison from the two exported folders
            fromFolders = logic.compareWithFolder(os.path.join(folder, "baseline"), os.path.join(folder, "followup"))
            self.assertEqual({n: r["classification"] for n, r in fromFolders.response["rois"].items()}, classes)
            self.assertEqual(comparison.tableNode.GetNumberOfRows(), len(response["rois"]))

            # Maps of the baseline: one volume per parameter, the lesion rim far above the liver
            mapsOutputs = logic.process(nodes.browser, segmentationNode,
                                        AnalysisOptions(dynamic_range_db=50.0, injection_time_s=2.0,
                                                        reference=REFERENCE, maps=True))
            self.assertIn("PE", mapsOutputs.mapNodes)
            peMap = slicer.util.arrayFromVolume(mapsOutputs.mapNodes["PE"])
            self.assertEqual(peMap.shape[-2:], mapsOutputs.analysis.maps.status.shape)
            # Bad input is an InputError with a message, not a crash
            with self.assertRaises(InputError):
                logic.process(nodes.browser, segmentationNode, AnalysisOptions(model="nonsense"))
            with self.assertRaises(InputError):
                logic.compareWithFolder(folder, analyses["followup"])  # no results.json there
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def test_DCEUSResponse_dicomPlugin(self):
        """The demo's baseline clip imported into a DICOM database is offered by the DCEUSResponse plugin
        above the generic image sequence plugin, and loads into a browser the engine reads back intact."""
        import numpy as np
        from DICOMLib import DICOMUtils

        from DCEUSResponseLib.ceus.layout import find_layout
        from DCEUSResponseLib.io.dicom_us import read_clip
        from DCEUSResponseLib.scene import clip_nodes

        self.assertIn("DCEUSResponseDICOMPlugin", slicer.modules.dicomPlugins)
        pluginClass = slicer.modules.dicomPlugins["DCEUSResponseDICOMPlugin"]
        self.delayDisplay("Building the demo study")
        folder, study, _truth = self._buildDemoStudy()
        try:
            clipPath = study["baseline"]["clip"]
            with DICOMUtils.TemporaryDICOMDatabase() as database:
                DICOMUtils.importDicom(os.path.dirname(clipPath), database)
                seriesUID = database.fileValue(clipPath, "0020,000E")
                self.assertTrue(seriesUID)
                files = database.filesForSeries(seriesUID)
                loadablesByPlugin, _loadEnabled = DICOMUtils.getLoadablesFromFileLists([files])
                DICOMUtils.selectHighestConfidenceLoadables(loadablesByPlugin)
                ours = [loadable for plugin, loadables in loadablesByPlugin.items() if isinstance(plugin, pluginClass)
                        for loadable in loadables]
                self.assertEqual(len(ours), 1)
                self.assertTrue(ours[0].selected)
                self.assertIn("CEUS liver baseline", ours[0].name)  # from the Series Description
                others = [loadable for plugin, loadables in loadablesByPlugin.items()
                          if not isinstance(plugin, pluginClass) for loadable in loadables if loadable.selected]
                self.assertEqual(others, [], "another plugin is also selected for the CEUS clip")

                self.delayDisplay("Loading the clip through the DICOM plugin")
                DICOMUtils.loadLoadables(loadablesByPlugin)
                browsers = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")
                self.assertEqual(len(browsers), 1)
                fromScene = clip_nodes.clip_from_browser(browsers[0])
                fromFile = read_clip(clipPath)
                layout = find_layout(fromFile)
                self.assertEqual(fromScene.frames.shape, fromFile.frames.shape)
                for panel in (layout.contrast, layout.bmode):  # the scene keeps the display panels exactly
                    rows, columns = panel.slices
                    self.assertTrue(np.array_equal(fromScene.frames[:, rows, columns], fromFile.frames[:, rows, columns]))
                self.assertTrue(np.allclose(fromScene.frame_times_s, fromFile.frame_times_s, atol=1e-6))
                self.assertEqual(fromScene.uids.get("SeriesInstanceUID"), seriesUID)
                self.assertEqual(find_layout(fromScene).display, "dual")
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def test_DCEUSResponse_petCt(self):
        """The demo patient through the PET/CT section's logic: a short demo clip analysed with the module,
        the CT and PET imported into a temporary DICOM database and loaded by Slicer's DICOM browser, the
        demo's landmark pairs as Markups point lists, Register, then Measure; the numbers against the
        synthetic truth (the same functions as Testing/Python/test_scene_pet_ct.py, headless)."""
        import numpy as np
        from DICOMLib import DICOMUtils

        from DCEUSResponseLib.app.demo import PANEL_SHAPE, REFERENCE, demo_landmarks, demo_regions
        from DCEUSResponseLib.ceus.layout import find_layout
        from DCEUSResponseLib.io.dicom_us import read_clip
        from DCEUSResponseLib.io.masks import read_roi_masks
        from DCEUSResponseLib.scene import clip_nodes, segmentation
        from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks
        from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
        from DCEUSResponseLib.synthetic.patient import DEMO_LESION_VALUES, LIVER_SUV, make_patient

        ensurePythonPackages(inTest=True)
        folder = tempfile.mkdtemp(prefix="DCEUSResponseTest-petct-", dir=slicer.app.temporaryPath)
        try:
            self.delayDisplay("Building the demo patient: clip, CT, PET")
            synthetic = make_clip(demo_regions("baseline"), panel_shape=PANEL_SHAPE, n_frames=40, frame_interval_s=1.0,
                                  display="dual", colour="gold", injection_time_s=2.0, dynamic_range_db=50.0, seed=5)
            clipPath = os.path.join(folder, "clip.dcm")
            write_clip(synthetic, clipPath, timing="vector")
            masks = write_roi_masks(synthetic, os.path.join(folder, "rois"))
            patient = write_patient(os.path.join(folder, "patient"), make_patient(demo_regions("baseline")))
            clip = read_clip(clipPath)
            nodes = clip_nodes.add_clip_sequences(slicer.mrmlScene, clip, find_layout(clip), name="CEUS")
            rois = read_roi_masks([masks["__segmentation__"]], (clip.rows, clip.columns), clip.frame_spacing_mm)
            segmentationNode = segmentation.add_roi_segmentation(slicer.mrmlScene, rois, clip, nodes.contrast_volume)
            options = AnalysisOptions(dynamic_range_db=50.0, injection_time_s=2.0, reference=REFERENCE, maps=True,
                                      map_binning=8, motion_compensation=False)
            outputs = DCEUSResponseLogic().process(nodes.browser, segmentationNode, options)

            self.delayDisplay("Loading the CT and the PET from a DICOM database")
            with DICOMUtils.TemporaryDICOMDatabase(os.path.join(folder, "database")) as database:
                DICOMUtils.importDicom(os.path.join(folder, "patient"), database)
                loaded = DICOMUtils.loadSeriesByUID([patient.ct_series_uid, patient.pet_series_uid])
                volumes = {node.GetAttribute("DICOM.instanceUIDs").split()[0]: node for node in
                           (slicer.mrmlScene.GetNodeByID(nodeId) for nodeId in loaded)
                           if node is not None and node.IsA("vtkMRMLScalarVolumeNode")}
                byModality = {database.fileValue(database.fileForInstance(uid), "0008,0060"): node
                              for uid, node in volumes.items()}
                ctNode, petNode = byModality["CT"], byModality["PT"]

                ceus, ct = demo_landmarks(noise_mm=0.0)
                dy, dx = clip.frame_spacing_mm
                ceusList = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "CEUS points")
                ctList = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "CT points")
                for (label, row, column), (_label, lps) in zip(ceus, ct):
                    ceusList.SetNthControlPointLabel(ceusList.AddControlPoint(-column * dx, -row * dy, 0.0), label)
                    ctList.SetNthControlPointLabel(ctList.AddControlPoint(-lps[0], -lps[1], lps[2]), label)

                self.delayDisplay("Register and Measure")
                logic = PetCtLogic()
                result, pairsTable = logic.register(outputs.analysis, nodes.browser, segmentationNode,
                                                    outputs.mapNodes, ceusList, ctList)
                self.assertLess(result.registration.fre_rms_mm, 1e-3)
                self.assertIsNone(result.flagged)
                self.assertEqual(result.panel, "bmode")
                self.assertEqual(pairsTable.GetNumberOfRows(), len(ceus))
                measured = logic.measure(outputs.analysis, os.path.join(folder, "exam"), nodes.browser,
                                         segmentationNode, outputs.mapNodes, ctNode, petNode, ceusList, ctList,
                                         database=database)
            rois = measured.fusion.rois
            lesionSuv = DEMO_LESION_VALUES["lesion1"][1]
            self.assertAlmostEqual(rois["lesion1"].pet.SUVmax / lesionSuv, 1.0, delta=0.02)
            self.assertAlmostEqual(rois["liver"].pet.SUVmean / LIVER_SUV, 1.0, delta=0.02)
            self.assertAlmostEqual(rois["lesion1"].tlr / (lesionSuv / LIVER_SUV), 1.0, delta=0.03)
            self.assertAlmostEqual(measured.fusion.suv_factor.factor / patient.truth.suv_factor, 1.0, delta=1e-3)
            self.assertEqual(measured.table.GetNumberOfRows(), len(rois))
            self.assertTrue(np.isfinite(rois["lesion2"].ct_hu_mean))
            self.assertTrue(os.path.isfile(os.path.join(folder, "exam", "pet_ct", "fusion.json")))
            self.assertEqual(nodes.bmode_volume.GetTransformNodeID(), ceusList.GetTransformNodeID())
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
