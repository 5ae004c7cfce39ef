"""The module panel's PET/CT section: the CT and PET (from the DICOM browser), two Markups point lists of
landmark pairs, Place pair, Register, Load transform and Measure, and the table of pairs / measures.

``PetCtLogic`` only delegates to the engine's Qt-free rooms (``DCEUSResponseLib.scene.pet_ct`` and
``pet_ct_measure``, tested on slicer-core); ``PetCtSection`` connects the .ui widgets to it through the
module widget's one error path. Only cheap imports at module level (Slicer imports the module at startup).
"""
import os
import shutil
import tempfile

import slicer
from slicer.i18n import tr as _

from DCEUSResponseLib.errors import InputError

CEUS_POINTS_NAME, CT_POINTS_NAME = "CEUS points", "CT points"
MEASURE_FOLDER = "pet_ct"  # inside the analysis (Export) folder: fuse's files and the landmark CSVs


class PetCtLogic:
    """Register, Load transform and Measure on a scene (``slicer.mrmlScene`` by default)."""

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else slicer.mrmlScene

    @staticmethod
    def _ceusNodes(browser, segmentation, maps, ceusList):
        from DCEUSResponseLib.scene.pet_ct import ceus_nodes_of_browser

        if browser is None:
            raise InputError("select the CEUS clip (its sequence browser) in Inputs")
        return ceus_nodes_of_browser(browser, segmentation, maps, ceusList)

    def register(self, analysis, browser, segmentation, maps, ceusList, ctList, pairsTable=None):
        """Fit the CEUS points onto the CT points, put the CEUS nodes under the registration, colour a bad
        pair; returns (``PetCtRegistration``, the pairs table node)."""
        from DCEUSResponseLib.scene.pet_ct import (
            add_pairs_table,
            analysis_inputs,
            flag_pair,
            place_ceus_nodes,
            register_point_lists,
        )

        if analysis is None:
            raise InputError("Apply first: Register places the analysed clip")
        if ceusList is None or ctList is None:
            raise InputError("choose the CEUS and the CT point lists (or click Place pair)")
        inputs = analysis_inputs(analysis)
        result = register_point_lists(ceusList, ctList, inputs)
        nodes = self._ceusNodes(browser, segmentation, maps, ceusList)
        place_ceus_nodes(self.scene, result.registration.ceus_to_patient_lps, result.panel, inputs, nodes)
        flag_pair([ceusList, ctList], result.flagged)
        return result, add_pairs_table(self.scene, result, pairsTable)

    def loadTransform(self, analysis, browser, segmentation, maps, ceusList, path):
        """Place the CEUS nodes with a rigid transform file (``fuse --transform``'s reading and panel)."""
        from DCEUSResponseLib.io.transforms import read_transform
        from DCEUSResponseLib.scene.pet_ct import analysis_inputs, place_ceus_nodes, transform_panel

        if analysis is None:
            raise InputError("Apply first: Load transform places the analysed clip")
        if not path:
            raise InputError("choose a transform file")
        registration = read_transform(path)
        inputs = analysis_inputs(analysis)
        place_ceus_nodes(self.scene, registration.ceus_to_patient_lps, transform_panel(inputs), inputs,
                         self._ceusNodes(browser, segmentation, maps, ceusList))
        return registration

    def measure(self, analysis, analysisFolder, browser, segmentation, maps, ctNode, petNode=None, ceusList=None,
                ctList=None, transformPath=None, database=None, table=None):
        """``fuse`` on the analysis folder (the current analysis exported there first: ``fuse`` reads the clip
        and ROIs from the folder, which may hold an older export) with the CT /
        PET files the DICOM database holds for the nodes; its files go to ``<folder>/pet_ct``. Returns
        ``PetCtMeasurement``."""
        from DCEUSResponseLib.export.contract import write_analysis
        from DCEUSResponseLib.scene.volume_sources import volume_source
        from DCEUSResponseLib.scene.pet_ct_measure import measure_pet_ct

        if analysis is None:
            raise InputError("Apply first: Measure uses the analysed clip's ROIs")
        if not analysisFolder:
            raise InputError("choose the Export folder: Measure writes the analysis and fuse's files there")
        if ctNode is None:
            raise InputError("choose the CT")
        write_analysis(analysis, analysisFolder)
        database = database if database is not None else slicer.dicomDatabase
        work = tempfile.mkdtemp(prefix="DCEUSResponse-petct-", dir=slicer.app.temporaryPath)
        try:
            ctSource = volume_source(ctNode, work, "ct", database)
            petSource = volume_source(petNode, work, "pet", database) if petNode is not None else None
            volumeRendering = slicer.modules.volumerendering.logic() if hasattr(slicer.modules, "volumerendering") \
                else None
            return measure_pet_ct(self.scene, analysisFolder, ctSource, petSource,
                                  os.path.join(analysisFolder, MEASURE_FOLDER),
                                  self._ceusNodes(browser, segmentation, maps, ceusList), ctNode, petNode,
                                  ceus_list=None if transformPath else ceusList,
                                  patient_list=None if transformPath else ctList, transform_path=transformPath,
                                  volume_rendering_logic=volumeRendering, table=table)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class PetCtSection:
    """The section's widgets (the .ui's ``petCt...``) on the module widget (its analysis, inputs and error path)."""

    def __init__(self, widget):
        self.widget = widget
        self.ui = widget.ui
        self.logic = PetCtLogic()
        self._transformPath = None  # set by Load transform: Measure then uses the file, not the landmarks
        self._pairsTable = None
        self._measureTable = None
        ui = self.ui
        ui.petCtPlacePairButton.connect("clicked(bool)", self.onPlacePairButton)
        ui.petCtRegisterButton.connect("clicked(bool)", self.onRegisterButton)
        ui.petCtLoadTransformButton.connect("clicked(bool)", self.onLoadTransformButton)
        ui.petCtMeasureButton.connect("clicked(bool)", self.onMeasureButton)
        for selector in (ui.petCtCtSelector, ui.petCtCeusPointsSelector, ui.petCtCtPointsSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtonStates)
        ui.petCtTransformPathLineEdit.connect("currentPathChanged(QString)", self.updateButtonStates)

    def reset(self):
        """The scene is closing: its nodes go with it."""
        self._transformPath = self._pairsTable = self._measureTable = None

    def updateButtonStates(self, *args):
        ui = self.ui
        hasAnalysis = self.widget._analysis is not None
        hasLists = ui.petCtCeusPointsSelector.currentNode() is not None and \
            ui.petCtCtPointsSelector.currentNode() is not None
        ui.petCtPlacePairButton.enabled = True
        ui.petCtRegisterButton.enabled = hasAnalysis and hasLists
        ui.petCtLoadTransformButton.enabled = hasAnalysis and bool(ui.petCtTransformPathLineEdit.currentPath)
        ui.petCtMeasureButton.enabled = hasAnalysis and ui.petCtCtSelector.currentNode() is not None \
            and (hasLists or self._transformPath is not None)

    def _pointList(self, selector, name):
        node = selector.currentNode()
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
            node.CreateDefaultDisplayNodes()
            selector.setCurrentNode(node)
        return node

    def _inputs(self):
        parameterNode = self.widget._parameterNode
        return (self.widget._analysis, parameterNode.inputBrowser, parameterNode.inputSegmentation,
                self.widget._mapNodes)

    def _showPlacementViews(self):
        """Side by side: the clip's frame (left, in its plane) and the CT with the PET (right), unless the
        layout is side by side already (the user may have zoomed in to place a point)."""
        from DCEUSResponseLib.scene.fusion_views import placement_views
        from DCEUSResponseLib.scene.pet_ct import ceus_nodes_of_browser

        layoutManager = slicer.app.layoutManager()
        if layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView:
            return
        browser, ctNode = self.widget._parameterNode.inputBrowser, self.ui.petCtCtSelector.currentNode()
        if browser is None or ctNode is None:
            raise InputError("choose the CEUS clip (Inputs) and the CT first: Place pair shows them side by side")
        nodes = ceus_nodes_of_browser(browser)
        ceusVolume = nodes.bmode_volume if nodes.bmode_volume is not None else nodes.contrast_volume
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        placement_views(slicer.mrmlScene, ceusVolume, ctNode, self.ui.petCtPetSelector.currentNode())
        slicer.util.resetSliceViews()

    def onPlacePairButton(self):
        from DCEUSResponseLib.scene.pet_ct import next_pair_point

        with self.widget._errorDisplay(_("Placing a landmark failed.")):
            ceusList = self._pointList(self.ui.petCtCeusPointsSelector, CEUS_POINTS_NAME)
            ctList = self._pointList(self.ui.petCtCtPointsSelector, CT_POINTS_NAME)
            self._showPlacementViews()
            target, label, _index = next_pair_point(ceusList, ctList)
            markupsLogic = slicer.modules.markups.logic()
            markupsLogic.SetActiveList(target)
            markupsLogic.StartPlaceMode(False)
        where = _("on the CEUS clip (left view)") if target is ceusList else _("in the CT (right view)")
        self.widget._setStatus(_("Click landmark {label} {where}.").format(label=label, where=where))
        self.updateButtonStates()

    def onRegisterButton(self):
        ui = self.ui
        with self.widget._errorDisplay(_("The registration failed.")):
            result, self._pairsTable = self.logic.register(*self._inputs(), ui.petCtCeusPointsSelector.currentNode(),
                                                           ui.petCtCtPointsSelector.currentNode(), self._pairsTable)
        self._transformPath = None
        ui.petCtTableView.setMRMLTableNode(self._pairsTable)
        self.widget._setStatus(result.summary())
        self.updateButtonStates()

    def onLoadTransformButton(self):
        path = self.ui.petCtTransformPathLineEdit.currentPath
        with self.widget._errorDisplay(_("Loading the transform failed.")):
            analysis, browser, segmentation, maps = self._inputs()
            self.logic.loadTransform(analysis, browser, segmentation, maps,
                                     self.ui.petCtCeusPointsSelector.currentNode(), path)
        self._transformPath = path
        self.ui.petCtTransformPathLineEdit.addCurrentPathToHistory()
        self.widget._setStatus(_("CEUS placed with {path}; Measure uses it.").format(path=path))
        self.updateButtonStates()

    def onMeasureButton(self):
        ui = self.ui
        analysis, browser, segmentation, maps = self._inputs()
        with self.widget._errorDisplay(_("The PET/CT measurement failed.")):
            self.widget.ensurePackages()  # Measure writes NRRD files: pynrrd, which Slicer does not bundle
            measured = self.logic.measure(analysis, ui.exportFolderPathLineEdit.currentPath, browser, segmentation,
                                          maps, ui.petCtCtSelector.currentNode(), ui.petCtPetSelector.currentNode(),
                                          ui.petCtCeusPointsSelector.currentNode(),
                                          ui.petCtCtPointsSelector.currentNode(), self._transformPath,
                                          table=self._measureTable)
        self._measureTable = measured.table
        ui.petCtTableView.setMRMLTableNode(measured.table)
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        text = _("PET/CT measured for {count} ROIs; files in {folder}.").format(
            count=len(measured.fusion.rois), folder=os.path.join(ui.exportFolderPathLineEdit.currentPath,
                                                                 MEASURE_FOLDER))
        self.widget._setStatus(" ".join([text, *measured.warnings]))
