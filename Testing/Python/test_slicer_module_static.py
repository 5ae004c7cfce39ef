"""Static checks of the Slicer extension (the module, its DICOM plugin, the .ui, the CMake files, the icon
and the Extensions Index entry), runnable without Slicer.

Slicer's Qt application cannot run here, so everything that can be checked from the files is checked
against what Slicer's own sources require (Slicer 5.12 / main, see the comments for the file each rule
comes from). The module's behaviour is tested inside Slicer by DCEUSResponseTest (DCEUSResponse.py,
registered with ctest by DCEUSResponse/CMakeLists.txt).
"""
import ast
import importlib.util
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "DCEUSResponse"
MODULE_NAME = "DCEUSResponse"
MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"
PLUGIN_FILE = MODULE_DIR / f"{MODULE_NAME}DICOMPlugin.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / f"{MODULE_NAME}.ui"
MODULE_ICON = MODULE_DIR / "Resources" / "Icons" / f"{MODULE_NAME}.png"
EXTENSION_ICON = ROOT / "Resources" / "Icons" / f"{MODULE_NAME}.png"
ICON_SCRIPT = MODULE_DIR / "Resources" / "make_icon.py"
CATALOG_ENTRY = ROOT / f"{MODULE_NAME}.json"
MODULE_SCRIPTS = sorted(MODULE_DIR.glob("*.py"))
# The module panel's sections that live outside the module file (a package beside it, as DataProbeLib)
SECTIONS_PACKAGE = MODULE_DIR / f"{MODULE_NAME}Widgets"
SECTION_SCRIPTS = sorted(SECTIONS_PACKAGE.glob("*.py"))
PET_CT_SECTION = SECTIONS_PACKAGE / "pet_ct_section.py"

# Packages a module file may import when Slicer imports it at startup: the standard library, what
# Slicer ships and always has loaded (numpy, scipy, vtk, slicer, qt, ctk), Slicer's DICOM library
# (Modules/Scripted/DICOMLib; every DICOM plugin of Slicer subclasses its DICOMPlugin at module level,
# e.g. Modules/Scripted/DICOMPlugins/DICOMImageSequencePlugin.py) and the engine.
ALLOWED_PACKAGES = set(sys.stdlib_module_names) | {"__future__", "numpy", "scipy", "vtk", "slicer", "qt", "ctk",
                                                    "DICOMLib", "DCEUSResponseLib", f"{MODULE_NAME}Widgets"}

# What Slicer's parameterNodeWrapper can bind (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py,
# the canRepresent() of each connector): widget class -> parameter kinds it represents.
CONNECTABLE = {
    "QCheckBox": {"bool"}, "ctkCheckBox": {"bool"},
    "QSpinBox": {"int"}, "QSlider": {"int"},
    "QDoubleSpinBox": {"float", "int"}, "ctkDoubleSpinBox": {"float", "int"}, "ctkSliderWidget": {"float", "int"},
    "qMRMLSliderWidget": {"float", "int"}, "ctkDoubleSlider": {"float", "int"}, "qMRMLSpinBox": {"float", "int"},
    "QComboBox": {"choice", "enum"}, "ctkComboBox": {"choice", "enum"},
    "QLineEdit": {"str"}, "QLabel": {"str"}, "QTextEdit": {"str"},
    "ctkPathLineEdit": {"path"}, "ctkDirectoryButton": {"path"},
    "qMRMLNodeComboBox": {"node"},
}
BOUNDED_WIDGETS = {"ctkSliderWidget", "qMRMLSliderWidget", "QSlider"}  # connectors refuse unbounded numbers
QT_WIDGETS = {"QWidget", "QLabel", "QPushButton", "QCheckBox", "QSpinBox", "QDoubleSpinBox", "QComboBox",
              "QLineEdit", "QTextEdit", "QTableView", "QSlider", "QGroupBox", "QFrame", "QRadioButton"}
SECTIONS = ("Inputs", "Options", "Results", "Compare", "Export", "Follow-up", "PET/CT")

# Slicer/ExtensionsIndex schemas/slicer-extension-catalog-entry-schema-v1.0.2.json (identical to
# Slicer's Schemas/ copy), reduced to what it constrains.
CATALOG_SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                      "slicer-extension-catalog-entry-schema-v1.0.2.json#")
CATALOG_REQUIRED = ("$schema", "category", "scm_url")
CATALOG_PROPERTIES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                      "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
                      "enabled": bool, "tier": int}
# Slicer/ExtensionsIndex scripts/check_description_files.py
CATALOG_CATEGORY_EXAMPLES = {"Ultrasound", "Quantification", "DICOM", "Sequences", "Segmentation"}
EXTENSIONS_INDEX_PROJECT_PATTERN = r'project\s*\(\s*([^\s\)\n\r]+)'
EXTENSIONS_INDEX_ICON_PATTERN = r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)'
EXTENSIONS_INDEX_SCREENSHOTS_PATTERN = r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)'
REQUIRED_METADATA = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")


# ----------------------------------------------------------------------------------------------
# helpers


def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _import_time_imports(body):
    """Imports that run when the module is imported: module level, if/try/with blocks, class bodies."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _import_time_imports(children)


def _imported_modules(node) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _parameter_kinds() -> dict[str, dict]:
    """The parameter node's fields: {name: {"kind": ..., "nodes": [...], "validators": {...}}}."""
    cls = _classes(_tree(MODULE_FILE))[f"{MODULE_NAME}ParameterNode"]
    fields = {}
    for statement in cls.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        annotation, validators = statement.annotation, set()
        if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) in ("Annotated", "typing.Annotated"):
            base, *extras = annotation.slice.elts
            validators = {ast.unparse(extra.func) for extra in extras if isinstance(extra, ast.Call)}
            annotation = base
        text = ast.unparse(annotation)
        nodes = [part.strip() for part in text.split("|") if part.strip().startswith("vtkMRML")]
        if nodes:
            kind = "node"
        elif text in ("bool", "int", "float", "str"):
            kind = "choice" if "Choice" in validators else text
        elif "Path" in text:
            kind = "path"
        else:
            kind = text
        fields[statement.target.id] = {"kind": kind, "nodes": nodes, "validators": validators,
                                       "default": statement.value}
    return fields


def _ui_root() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _ui_widgets() -> list[ET.Element]:
    return list(_ui_root().iter("widget"))


def _property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _parameter_widgets() -> dict[str, ET.Element]:
    found = {}
    for widget in _ui_widgets():
        prop = _property(widget, "SlicerParameterName")
        if prop is not None:
            name = prop.findtext("string")
            assert name not in found, f"two widgets bound to parameter {name!r}"
            found[name] = widget
    return found


def _cmake_sets(text: str) -> dict[str, str]:
    """``set(NAME value)`` of a CMake file (comments removed; quoted or single unquoted values)."""
    text = re.sub(r"#[^\n]*", "", text)
    values = {}
    for match in re.finditer(r'set\(\s*(\w+)\s+("(?:[^"\\]|\\.)*"|[^\s\)]+)\s*\)', text):
        values.setdefault(match.group(1), match.group(2).strip('"'))
    return values


def _cmake_list(text: str, name: str) -> list[str]:
    match = re.search(r"set\(\s*" + name + r"\s+([^)]*)\)", text)
    assert match, f"set({name} ...) not found"
    return match.group(1).split()


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------------------------
# Python module files


def test_the_module_folder_has_the_module_and_the_dicom_plugin():
    assert [p.name for p in MODULE_SCRIPTS] == [f"{MODULE_NAME}.py", f"{MODULE_NAME}DICOMPlugin.py"]


@pytest.mark.parametrize("path", MODULE_SCRIPTS + SECTION_SCRIPTS, ids=[p.name for p in MODULE_SCRIPTS + SECTION_SCRIPTS])
def test_module_files_compile_as_slicer_loads_them(path):
    """Slicer loads the module file with ``exec_module`` (qSlicerScriptedUtils::loadSourceAsModule):
    it must compile, not only parse. ``ast.parse`` accepted a ``global`` declared after the name's
    first use in ``ensurePythonPackages``, a SyntaxError when compiled, so Slicer 5.12 would not have
    loaded the module at all; these files never run here (no Qt)."""
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


@pytest.mark.parametrize("path", MODULE_SCRIPTS + SECTION_SCRIPTS, ids=[p.name for p in MODULE_SCRIPTS + SECTION_SCRIPTS])
def test_module_files_import_only_slicer_numpy_scipy_vtk_and_the_engine_at_startup(path):
    offending = [f"{path.name}:{node.lineno}: {ast.unparse(node)}" for node in _import_time_imports(_tree(path).body)
                 if any(name.split(".")[0] not in ALLOWED_PACKAGES for name in _imported_modules(node))]
    assert not offending, "imports at module level outside the allowed packages:\n" + "\n".join(offending)


def test_importing_the_module_files_does_not_import_scipy():
    """Slicer imports every scripted module at startup: the engine modules imported at module level
    must be cheap (no scipy.optimize: about half a second)."""
    engine_modules = sorted({name for path in MODULE_SCRIPTS for node in _import_time_imports(_tree(path).body)
                             for name in _imported_modules(node) if name.split(".")[0] == "DCEUSResponseLib"})
    assert "DCEUSResponseLib" in engine_modules
    code = ("import sys\n" + "".join(f"import {name}\n" for name in engine_modules)
            + "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')\nprint(len(heavy))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0", f"{engine_modules} import scipy at Slicer startup"


def test_the_module_file_has_the_classes_slicer_looks_for():
    """qSlicerScriptedLoadableModule::setPythonSource instantiates the class named like the file, and
    <Name>Widget; ScriptedLoadableModule.runTest looks for <Name>Test."""
    classes = _classes(_tree(MODULE_FILE))
    bases = {name: [ast.unparse(base) for base in cls.bases] for name, cls in classes.items()}
    assert bases[MODULE_NAME] == ["ScriptedLoadableModule"]
    assert bases[f"{MODULE_NAME}Widget"][0] == "ScriptedLoadableModuleWidget"
    assert "VTKObservationMixin" in bases[f"{MODULE_NAME}Widget"]
    assert bases[f"{MODULE_NAME}Logic"] == ["ScriptedLoadableModuleLogic"]
    assert bases[f"{MODULE_NAME}Test"] == ["ScriptedLoadableModuleTest"]
    parameter_node = classes[f"{MODULE_NAME}ParameterNode"]
    assert [ast.unparse(d) for d in parameter_node.decorator_list] == ["parameterNodeWrapper"]
    logic_methods = {n.name for n in classes[f"{MODULE_NAME}Logic"].body if isinstance(n, ast.FunctionDef)}
    assert {"process", "compareWithFolder", "exportResults", "exportToDicomDatabase", "getParameterNode"} <= logic_methods
    tests = {n.name for n in classes[f"{MODULE_NAME}Test"].body if isinstance(n, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= tests and len([t for t in tests if t.startswith("test_")]) >= 2


def _methods(class_name: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in _classes(_tree(MODULE_FILE))[class_name].body if isinstance(n, ast.FunctionDef)}


def test_the_logic_delegates_and_returns_its_outputs():
    """The Logic builds no vtk table itself (scene/tables.py does), keeps no results as state, and
    process() takes the engine's AnalysisOptions (one spelling of each option), as the module
    template's Logic.process only delegates (Utilities/Templates/Modules/Scripted/TemplateKey.py)."""
    logic_source = ast.unparse(_classes(_tree(MODULE_FILE))[f"{MODULE_NAME}Logic"])
    for built_here in ("vtkStringArray", "vtkDoubleArray", "AddColumn", "self.resultNodes", "self.mapNodes",
                       "self.responseTableNode", "json.loads", "json_text"):
        assert built_here not in logic_source, built_here
    process = _methods(f"{MODULE_NAME}Logic")["process"]
    assert [a.arg for a in process.args.args][:4] == ["self", "browserNode", "segmentationNode", "options"]
    assert ast.unparse(process.args.args[3].annotation) == "AnalysisOptions"
    assert ast.unparse(process.returns) == "AnalysisOutputs"
    assert "results_json(followup)" in ast.unparse(_methods(f"{MODULE_NAME}Logic")["compareWithFolder"])
    widget_source = ast.unparse(_classes(_tree(MODULE_FILE))[f"{MODULE_NAME}Widget"])
    assert "getattr(" not in widget_source and "self.logic.resultNodes" not in widget_source


def test_the_widget_has_one_error_path_the_templates():
    """Every button runs the engine inside slicer.util.tryWithErrorDisplay (Base/Python/slicer/util.py,
    as TemplateKey.onApplyButton), through the one _errorDisplay helper; no handler catches errors itself."""
    methods = _methods(f"{MODULE_NAME}Widget")
    assert "slicer.util.tryWithErrorDisplay(message, waitCursor=True)" in ast.unparse(methods["_errorDisplay"])
    for name in ("onApplyButton", "onCompareButton", "onExportButton", "onExportDicomDatabaseButton",
                 "onLoadStudyButton", "onFollowUpLesionChanged", "onOpenExamSceneButton"):
        source = ast.unparse(methods[name])
        assert "with self._errorDisplay(" in source, name
        handlers = [ast.unparse(h.type) for h in ast.walk(methods[name]) if isinstance(h, ast.ExceptHandler)]
        assert set(handlers) <= {"ProcessingCancelled"}, (name, handlers)


def test_the_module_texts_are_translatable_and_the_category_is_ultrasound():
    init = next(n for n in _classes(_tree(MODULE_FILE))[MODULE_NAME].body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assigned = {ast.unparse(n.targets[0]): n.value for n in ast.walk(init) if isinstance(n, ast.Assign)}
    for attribute in ("title", "helpText", "acknowledgementText"):
        value = assigned[f"self.parent.{attribute}"]
        assert isinstance(value, ast.Call) and ast.unparse(value.func) == "_", f"{attribute} is not wrapped in _()"
    assert ast.unparse(assigned["self.parent.categories"]) == "[translate('qSlicerAbstractCoreModule', 'Ultrasound')]"
    assert ast.unparse(assigned["self.parent.contributors"]).startswith("[")


def test_the_dicom_plugin_registers_like_slicers_own_plugins():
    """Modules/Scripted/DICOMPlugins/DICOMImageSequencePlugin.py: a hidden module class whose constructor
    adds the plugin class to slicer.modules.dicomPlugins."""
    tree = _tree(PLUGIN_FILE)
    classes = _classes(tree)
    hook = classes[f"{MODULE_NAME}DICOMPlugin"]
    source = ast.unparse(hook)
    assert "parent.hidden = True" in source
    assert f"slicer.modules.dicomPlugins['{MODULE_NAME}DICOMPlugin'] = {MODULE_NAME}DICOMPluginClass" in source
    plugin = classes[f"{MODULE_NAME}DICOMPluginClass"]
    assert [ast.unparse(b) for b in plugin.bases] == ["DICOMPlugin"]
    methods = {n.name for n in plugin.body if isinstance(n, ast.FunctionDef)}
    assert {"examineForImport", "examineFiles", "load"} <= methods


def test_the_dicom_plugin_outranks_the_image_sequence_plugin_for_ultrasound_clips():
    """DICOMImageSequencePlugin gives ultrasound sequences confidence 0.7; DICOMGeAbusPlugin 0.9 for GE
    Invenia ABUS volumes (Slicer main, Modules/Scripted/DICOMPlugins)."""
    constants = {n.targets[0].id: ast.literal_eval(n.value) for n in _tree(PLUGIN_FILE).body
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    assert 0.7 < constants["CONTRAST_CLIP_CONFIDENCE"] < 0.9
    # other ultrasound cines stay with the generic plugins (DICOMScalarVolumePlugin 0.5, image sequence 0.7)
    assert constants["UNDECODABLE_CONFIDENCE"] < constants["OTHER_CINE_CONFIDENCE"] < 0.5
    assert "1.2.840.10008.5.1.4.1.1.3.1" in constants["US_MULTIFRAME_SOP_CLASS_UIDS"]
    assert "1.2.840.10008.5.1.4.1.1.6.1" in constants["US_SINGLE_FRAME_SOP_CLASS_UIDS"]
    from DCEUSResponseLib.io.dicom_dataset import US_MULTIFRAME_SOP_CLASSES, US_SINGLE_FRAME_SOP_CLASSES

    assert set(constants["US_MULTIFRAME_SOP_CLASS_UIDS"]) == set(US_MULTIFRAME_SOP_CLASSES)
    assert set(constants["US_SINGLE_FRAME_SOP_CLASS_UIDS"]) == set(US_SINGLE_FRAME_SOP_CLASSES)


def test_the_module_constants_agree_with_the_engine():
    constants = {n.targets[0].id: n.value for n in _tree(MODULE_FILE).body
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    from DCEUSResponseLib.longitudinal.response import DEFAULT_RULE
    from DCEUSResponseLib.kinetics.models import BOLUS_MODELS, DEFAULT_MODEL

    assert set(ast.literal_eval(constants["MODEL_CHOICES"])) == set(BOLUS_MODELS)
    assert ast.literal_eval(constants["DEFAULT_MODEL"]) == DEFAULT_MODEL
    assert ast.literal_eval(constants["DEFAULT_RESPONSE_RULE"]) == DEFAULT_RULE
    fields = _parameter_kinds()
    assert ast.unparse(fields["dynamicRangeDb"]["default"]) == "DEFAULT_DYNAMIC_RANGE_DB"


def test_the_parameter_node_has_the_inputs_options_and_outputs():
    fields = _parameter_kinds()
    expected = {
        "inputBrowser": ("node", ["vtkMRMLSequenceBrowserNode"]), "inputSegmentation": ("node", ["vtkMRMLSegmentationNode"]),
        "referenceSegmentId": ("str", []), "dynamicRangeDb": ("float", []), "injectionTimeS": ("float", []),
        "referenceFrame": ("int", []), "model": ("choice", []), "motionCompensation": ("bool", []),
        "maps": ("bool", []), "outputParameterTable": ("node", ["vtkMRMLTableNode"]),
        "outputTicTable": ("node", ["vtkMRMLTableNode"]), "outputChart": ("node", ["vtkMRMLPlotChartNode"]),
    }
    for name, (kind, nodes) in expected.items():
        assert name in fields, name
        assert fields[name]["kind"] == kind, (name, fields[name])
        assert fields[name]["nodes"] == nodes, (name, fields[name])


# ----------------------------------------------------------------------------------------------
# Qt Designer file


def test_the_ui_file_is_well_formed_qt_designer_xml():
    root = _ui_root()
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.findtext("class") == MODULE_NAME
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == MODULE_NAME
    names = [w.get("name") for w in _ui_widgets()]
    assert len(names) == len(set(names)), "widget names must be unique"


def test_every_slicer_parameter_name_is_a_parameter_its_widget_can_represent():
    fields = _parameter_kinds()
    bound = _parameter_widgets()
    assert bound, "no widget has a SlicerParameterName"
    for name, widget in bound.items():
        assert name in fields, f"SlicerParameterName {name!r} is not a field of {MODULE_NAME}ParameterNode"
        prop = _property(widget, "SlicerParameterName")
        assert prop.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property (stdset=0)"
        widget_class, field = widget.get("class"), fields[name]
        assert field["kind"] in CONNECTABLE.get(widget_class, set()), \
            f"{name}: a {widget_class} cannot represent a {field['kind']} parameter (guiConnectors.py)"
        if widget_class in BOUNDED_WIDGETS:
            assert "WithinRange" in field["validators"], f"{name}: {widget_class} needs a bounded number"
        if widget_class == "qMRMLNodeComboBox":
            node_types = [s.text for s in _property(widget, "nodeTypes").iter("string")]
            assert node_types == field["nodes"], (name, node_types, field["nodes"])


def test_every_parameter_but_the_reference_segment_has_a_widget():
    """The reference segment is shown by a qMRMLSegmentSelectorWidget, which no parameterNodeWrapper
    connector represents: the widget keeps it in sync with the parameter node itself."""
    assert set(_parameter_kinds()) - set(_parameter_widgets()) == {"referenceSegmentId"}
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert "referenceSegmentSelector.connect(\"currentSegmentChanged(QString)\"" in source


def test_the_ui_has_the_sections_selectors_status_label_and_buttons():
    widgets = {w.get("name"): w for w in _ui_widgets()}
    sections = [(_property(w, "text").findtext("string")) for w in widgets.values()
                if w.get("class") == "ctkCollapsibleButton"]
    assert sections == list(SECTIONS)
    assert widgets["statusLabel"].get("class") == "QLabel"
    assert widgets["applyButton"].get("class") == "QPushButton"
    assert _property(widgets["applyButton"], "enabled").findtext("bool") == "false"
    for name in ("inputBrowserSelector", "inputSegmentationSelector"):
        assert widgets[name].get("class") == "qMRMLNodeComboBox"
        assert _property(widgets[name], "noneEnabled").findtext("bool") == "true"
        assert _property(widgets[name], "addEnabled").findtext("bool") == "false"
    assert widgets["referenceSegmentSelector"].get("class") == "qMRMLSegmentSelectorWidget"
    for name in ("baselineFolderPathLineEdit", "exportFolderPathLineEdit", "studyFolderPathLineEdit"):
        assert widgets[name].get("class") == "ctkPathLineEdit"
        assert "ctkPathLineEdit::Dirs" in _property(widgets[name], "filters").findtext("set")
    assert widgets["responseTableView"].get("class") == "qMRMLTableView"
    assert widgets["followUpTableView"].get("class") == "qMRMLTableView"
    for name in ("followUpPatientComboBox", "followUpLesionComboBox", "followUpExamComboBox"):
        assert widgets[name].get("class") == "QComboBox"
    for name in ("loadStudyButton", "openExamSceneButton"):
        assert widgets[name].get("class") == "QPushButton"
        assert _property(widgets[name], "enabled").findtext("bool") == "false"


def test_custom_widgets_are_declared_and_mrml_widgets_get_the_scene():
    root = _ui_root()
    declared = {c.findtext("class"): c.findtext("header") for c in root.iter("customwidget")}
    for widget in _ui_widgets():
        cls = widget.get("class")
        if cls not in QT_WIDGETS:
            assert declared.get(cls) == f"{cls}.h", f"custom widget {cls} is not declared in <customwidgets>"
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("sender") == MODULE_NAME and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml_widgets = {w.get("name") for w in _ui_widgets() if w.get("class").startswith("qMRML")} - {MODULE_NAME}
    assert mrml_widgets and mrml_widgets == receivers


def test_every_ui_widget_the_module_uses_exists():
    names = {w.get("name") for w in _ui_widgets()}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    used |= set(re.findall(r"\bui\.(\w+)", PET_CT_SECTION.read_text(encoding="utf-8")))
    assert used and used <= names, f"not in the .ui: {sorted(used - names)}"


# ----------------------------------------------------------------------------------------------
# CMake files


def test_the_extension_cmakelists_has_the_metadata_and_the_template_structure():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    values = _cmake_sets(text)
    for name in REQUIRED_METADATA:
        assert values.get(name), f"{name} is not set"
    assert values["EXTENSION_CATEGORY"] == "Ultrasound"
    assert values["EXTENSION_DEPENDS"] == "NA"
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL"):
        assert values[name].startswith("https://"), name
    # the order of Utilities/Templates/Extensions/Default/CMakeLists.txt
    steps = [r"cmake_minimum_required\(", r"project\(DCEUSResponse\)", r"find_package\(Slicer REQUIRED\)",
             r"include\(\$\{Slicer_USE_FILE\}\)", r"add_subdirectory\(DCEUSResponse\)",
             r"include\(\$\{Slicer_EXTENSION_GENERATE_CONFIG\}\)", r"include\(\$\{Slicer_EXTENSION_CPACK\}\)"]
    positions = [re.search(step, text).start() for step in steps]
    assert positions == sorted(positions)
    # Extensions Index's check_cmakelists_content: project name = catalog file name, icon and screenshots
    assert re.findall(EXTENSIONS_INDEX_PROJECT_PATTERN, text, re.IGNORECASE | re.MULTILINE)[0] == CATALOG_ENTRY.stem
    icon_url = re.findall(EXTENSIONS_INDEX_ICON_PATTERN, text, re.IGNORECASE | re.MULTILINE)[0]
    screenshots = re.findall(EXTENSIONS_INDEX_SCREENSHOTS_PATTERN, text, re.IGNORECASE | re.MULTILINE)[0].split()
    assert screenshots and all(url.startswith("https://raw.githubusercontent.com/") for url in screenshots)
    assert all("/Resources/Screenshots/" in url for url in screenshots)
    # the icon URL is the raw URL of the repository's own icon file
    assert icon_url.startswith("https://raw.githubusercontent.com/")
    assert icon_url.endswith("/main/" + EXTENSION_ICON.relative_to(ROOT).as_posix())
    for name in ("EXTENSION_LICENSE_FILE", "EXTENSION_README_FILE"):
        path = values[name].replace("${CMAKE_CURRENT_SOURCE_DIR}", str(ROOT))
        assert pathlib.Path(path).is_file(), f"{name} points to {path}"


def test_every_file_the_module_cmakelists_lists_exists_and_every_script_is_listed():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert _cmake_sets(text)["MODULE_NAME"] == MODULE_NAME
    scripts = [s.replace("${MODULE_NAME}", MODULE_NAME) for s in _cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", MODULE_NAME) for s in _cmake_list(text, "MODULE_PYTHON_RESOURCES")]
    for relative in scripts + resources:
        assert (MODULE_DIR / relative).is_file(), f"listed in CMakeLists.txt but missing: {relative}"
    assert sorted(scripts) == sorted([p.name for p in MODULE_SCRIPTS]
                                     + [p.relative_to(MODULE_DIR).as_posix() for p in SECTION_SCRIPTS])
    shipped = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*")
               if p.is_file() and p != ICON_SCRIPT and "__pycache__" not in p.parts}
    assert shipped == set(resources), "every resource file (but the icon script) must be installed"
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME \$\{MODULE_NAME\}\s+SCRIPTS \$\{MODULE_PYTHON_SCRIPTS\}"
                     r"\s+RESOURCES \$\{MODULE_PYTHON_RESOURCES\}\s+WITH_GENERIC_TESTS\s*\)", text)


def test_the_module_cmakelists_installs_the_engine_package_next_to_the_modules():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    source_dir = re.search(r"get_filename_component\(DCEUSResponseLib_SOURCE_DIR \$\{CMAKE_CURRENT_SOURCE_DIR\}/([^ ]+) "
                           r"REALPATH\)", text).group(1)
    package = (MODULE_DIR / source_dir).resolve()
    assert package == ROOT / "DCEUSResponseLib" and (package / "__init__.py").is_file()
    # GLOB_RECURSE with RELATIVE keeps the subpackages' paths (io/dicom_us.py): CTK's macro copies each
    # script to DESTINATION_DIR/<relative path> and installs that whole folder (CMake/ctkMacroCompilePythonScript.cmake)
    assert re.search(r"file\(GLOB_RECURSE DCEUSResponseLib_PYTHON_SCRIPTS\s+RELATIVE \$\{DCEUSResponseLib_SOURCE_DIR\}"
                     r"\s+CONFIGURE_DEPENDS\s+\$\{DCEUSResponseLib_SOURCE_DIR\}/\*\.py\s*\)", text)
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\)", text, re.S).group(1).split()
    arguments = dict(zip(call[0::2], call[1::2]))
    assert arguments["TARGET_NAME"] == "DCEUSResponseLib"
    assert arguments["SOURCE_DIR"] == "${DCEUSResponseLib_SOURCE_DIR}"
    # as slicerMacroBuildScriptedModule and SegmentStatisticsPlugins do (CMake/SlicerMacroBuildScriptedModule.cmake)
    assert arguments["DESTINATION_DIR"] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/DCEUSResponseLib"
    assert arguments["INSTALL_DIR"] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/DCEUSResponseLib"
    assert "NO_INSTALL_SUBDIR" in call


def test_the_module_cmakelists_registers_the_self_test_as_the_template_does():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", text, re.S).group(1)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in block
    assert "add_subdirectory(Testing)" in block
    assert (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text().strip() == "add_subdirectory(Python)"
    assert (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").is_file()


# ----------------------------------------------------------------------------------------------
# Icon


def test_the_icons_are_128_pixel_pngs_and_the_same_image():
    assert _png_size(MODULE_ICON) == (128, 128)
    assert _png_size(EXTENSION_ICON) == (128, 128)
    assert MODULE_ICON.read_bytes() == EXTENSION_ICON.read_bytes()


def test_the_icon_is_what_the_icon_script_draws():
    np = pytest.importorskip("numpy")
    image_module = pytest.importorskip("PIL.Image")
    spec = importlib.util.spec_from_file_location("make_icon", ICON_SCRIPT)
    make_icon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icon)
    drawn = np.asarray(make_icon.draw_icon(), dtype=np.int16)
    with image_module.open(MODULE_ICON) as stored:
        assert stored.mode == "RGBA"
        stored = np.asarray(stored, dtype=np.int16)
    assert drawn.shape == stored.shape == (128, 128, 4)
    assert np.mean(np.abs(drawn - stored)) < 1.0  # Pillow versions may resample a level differently


# ----------------------------------------------------------------------------------------------
# Extensions Index catalog entry


def test_the_catalog_entry_follows_the_extensions_index_schema():
    raw = CATALOG_ENTRY.read_bytes()
    assert b"\r" not in raw, "the Extensions Index requires LF line endings"
    entry = json.loads(raw)
    assert entry["$schema"] == CATALOG_SCHEMA_URL
    for key in CATALOG_REQUIRED:
        assert entry.get(key), f"required field {key!r} missing"
    assert set(entry) <= set(CATALOG_PROPERTIES), f"fields not in the schema: {set(entry) - set(CATALOG_PROPERTIES)}"
    for key, value in entry.items():
        assert isinstance(value, CATALOG_PROPERTIES[key]) and not (CATALOG_PROPERTIES[key] is int and
                                                                    isinstance(value, bool)), key
    assert all(isinstance(item, str) for item in entry.get("build_dependencies", []))
    assert entry.get("scm_type", "git") in ("git", "local")
    assert 1 <= entry.get("tier", 1) <= 5
    assert entry["scm_url"].split("://")[0] in ("git", "https")


def test_the_catalog_entry_agrees_with_the_cmakelists():
    entry = json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))
    values = _cmake_sets((ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert entry["category"] == values["EXTENSION_CATEGORY"] and entry["category"] in CATALOG_CATEGORY_EXAMPLES
    assert entry["build_dependencies"] == ([] if values["EXTENSION_DEPENDS"] == "NA"
                                           else values["EXTENSION_DEPENDS"].split())
    assert entry["build_subdirectory"] == "."  # not a superbuild extension
    homepage = values["EXTENSION_HOMEPAGE"].rstrip("/")
    assert entry["scm_url"].removesuffix(".git") == homepage
    for uid in ("1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.1"):
        assert f"SOPClassUID == '{uid}'" in entry["dicom_support_rule"]


def test_the_catalog_entry_validates_with_jsonschema_when_available():
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema", "type": "object",
        "required": list(CATALOG_REQUIRED), "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"}, "category": {"type": "string"}, "scm_url": {"type": "string"},
            "scm_revision": {"type": "string"}, "scm_type": {"type": "string", "enum": ["git", "local"]},
            "build_dependencies": {"type": "array", "items": {"type": "string"}},
            "dicom_support_rule": {"type": "string"}, "build_subdirectory": {"type": "string"},
            "enabled": {"type": "boolean"}, "tier": {"type": "integer", "minimum": 1, "maximum": 5},
        },
    }
    jsonschema.validate(json.loads(CATALOG_ENTRY.read_text(encoding="utf-8")), schema)


def test_the_repository_name_passes_the_extensions_index_checker():
    """Slicer/ExtensionsIndex scripts/check_description_files.py (check_git_repository_name): the
    repository name in scm_url must contain 'slicer'; check_cmakelists_content: the CMake project name
    must equal the description file's name. Homepage, icon and screenshots name the same repository."""
    entry = json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))
    values = _cmake_sets((ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    path = entry["scm_url"].split("://", 1)[1].split("/", 1)[1].removesuffix(".git")  # owner/repository
    owner, repository = path.split("/")
    assert "slicer" in repository.lower() and repository == "SlicerDCEUSResponse"
    project = re.search(r"project\s*\(\s*([^\s)]+)", (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")).group(1)
    assert project == CATALOG_ENTRY.stem
    assert values["EXTENSION_HOMEPAGE"].rstrip("/") == f"https://github.com/{owner}/{repository}"
    for url in [values["EXTENSION_ICONURL"], *values["EXTENSION_SCREENSHOTURLS"].split()]:
        assert url.startswith(f"https://raw.githubusercontent.com/{owner}/{repository}/main/"), url
        assert (ROOT / url.split("/main/", 1)[1]).is_file(), url


# What Slicer 5.12 bundles in its Python (the project's target); the module ensures the rest.
SLICER_BUNDLED = {"numpy", "scipy", "pydicom", "pillow", "highdicom", "simpleitk", "pyjpegls"}


def test_the_module_declares_what_slicer_does_not_bundle():
    """Resources/requirements.txt (read by slicer.packaging.load_requirements, Slicer 5.12's template
    mechanism) lists exactly the engine's dependencies that Slicer does not bundle."""
    import tomllib

    from packaging.requirements import Requirement

    lines = (MODULE_DIR / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    declared = {Requirement(line.strip()).name.lower() for line in lines
                if line.strip() and not line.strip().startswith(("#", "-"))}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    engine = {Requirement(text).name.lower() for text in project["dependencies"]}
    assert declared == engine - SLICER_BUNDLED


def test_the_module_ensures_its_requirements_before_export_as_the_template_does():
    """Slicer 5.12 Utilities/Templates/Modules/Scripted/TemplateKey.py: slicer.packaging.pip_ensure(
    slicer.packaging.load_requirements(self.resourcePath("requirements.txt")), requester=...)."""
    tree = _tree(MODULE_FILE)
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    ensure = ast.unparse(functions["ensurePythonPackages"])
    assert "slicer.packaging.load_requirements(REQUIREMENTS_FILE)" in ensure
    assert "slicer.packaging.pip_ensure(requirements, requester=requester" in ensure
    export = ast.unparse(functions["onExportButton"])
    assert export.index("self.ensurePackages()") < export.index("self.logic.exportResults")
    assert "ensurePythonPackages()" in ast.unparse(functions["ensurePackages"])
    # the PET/CT section's Measure writes NRRD files too (a decline at Apply must not leave it without pynrrd)
    section = {n.name: n for n in ast.walk(_tree(PET_CT_SECTION)) if isinstance(n, ast.FunctionDef)}
    measure = ast.unparse(section["onMeasureButton"])
    assert measure.index("self.widget._errorDisplay(") < measure.index("self.widget.ensurePackages()") \
        < measure.index("self.logic.measure(")
    # First use, where the template puts it (onApplyButton), before the progress dialog; the analysis
    # runs without the packages, so declining or a failed pip (no network) must not stop it.
    apply = ast.unparse(functions["onApplyButton"])
    assert apply.index("ensurePythonPackages(required=False)") < apply.index("createProgressDialog")
    assert apply.index("self._errorDisplay(") < apply.index("ensurePythonPackages(required=False)")
    assert "except (RuntimeError, subprocess.SubprocessError, OSError)" in ensure and "if required:" in ensure
    # declined once at Apply: not asked again at Apply this session (Export, which needs pynrrd, asks)
    assert "if not required and _optionalPackagesDeclined:" in ensure and "_optionalPackagesDeclined = True" in ensure
    summary = ast.unparse(functions["responseSummary"])
    assert "response.get('warnings')" in summary  # compare's identity and settings warnings reach the user
    constants = {n.targets[0].id: ast.unparse(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    assert "'Resources', 'requirements.txt'" in constants["REQUIREMENTS_FILE"]


def test_the_dicom_database_export_uses_dicomlib_as_slicer_5_12_defines_it():
    """Logic.exportToDicomDatabase, checked against Slicer 5.12's sources:

    - Modules/Scripted/DICOMLib/DICOMUtils.py ``def importDicom(dicomDataDir, dicomDatabase=None,
      copyFiles=False)``: indexes the folder with ``ctk.ctkDICOMIndexer().addDirectory(database, dir,
      copyFiles)`` and returns False (it does not raise) on failure. Without ``copyFiles=True`` the
      database would point at the temporary folder the method then removes.
    - ``slicer.app.temporaryPath`` (Base/QTCore/qSlicerCoreApplication.h, Q_PROPERTY temporaryPath),
      the folder DICOMLib/DICOMExportScene.py makes its own with ``tempfile.mkdtemp(..., slicer.app.temporaryPath)``.
    - ``slicer.dicomDatabase.isOpen`` (Modules/Scripted/DICOM/DICOM.py) and ``fileForInstance(uid)``
      (DICOMLib/DICOMUtils.py, DICOMBrowser.py) of ctkDICOMDatabase.
    - DICOMUtils.TemporaryDICOMDatabase(directory) (a context manager returning slicer.dicomDatabase),
      used by the in-Slicer test.
    The engine builds the objects (export.dicom_outputs); the Logic only writes, imports and cleans up.
    """
    method = _methods(f"{MODULE_NAME}Logic")["exportToDicomDatabase"]
    source = ast.unparse(method)
    assert "from DICOMLib import DICOMUtils" in source
    assert "DICOMUtils.importDicom(folder, database, copyFiles=True)" in source
    assert "if not DICOMUtils.importDicom(" in source  # its False return becomes an error
    assert "tempfile.mkdtemp(prefix='DCEUSResponse-dicom-', dir=slicer.app.temporaryPath)" in source
    assert "not database.isOpen" in source and "database.fileForInstance(" in source
    cleanup = [node for node in ast.walk(method) if isinstance(node, ast.Try) and node.finalbody]
    assert cleanup and "shutil.rmtree(folder" in ast.unparse(cleanup[0].finalbody)
    assert "analysis_dicom_outputs(analysis" in source and "write_datasets(outputs, folder)" in source
    export = ast.unparse(_methods(f"{MODULE_NAME}Logic")["exportResults"])
    assert "dicom_writers(analysis_dicom_outputs(" in export and "extra_writers=extra" in export
    widget = ast.unparse(_methods(f"{MODULE_NAME}Widget")["onExportButton"])
    assert "self.ui.exportDicomCheckBox.checked" in widget and "dicom=withDicom" in widget
    test_source = MODULE_FILE.read_text(encoding="utf-8")
    assert "DICOMUtils.TemporaryDICOMDatabase(" in test_source
    widgets = {w.get("name"): w for w in _ui_widgets()}
    assert widgets["exportDicomCheckBox"].get("class") == "QCheckBox"
    assert widgets["exportDicomDatabaseButton"].get("class") == "QPushButton"
    assert _property(widgets["exportDicomDatabaseButton"], "enabled").findtext("bool") == "false"


# ----------------------------------------------------------------------------------------------
# Follow-up section

# The Slicer 5.12 sources that define each API the Follow-up section (module and scene/follow_up.py)
# calls, and the names they must declare. The MRML calls also run for real in test_scene_follow_up.py
# (slicer-core); the Qt-side ones (table view, Plots logic, loadScene) are checked here only.
FOLLOW_UP_APIS = {
    "Libs/MRML/Widgets/qMRMLTableView.h": ("void setMRMLTableNode(vtkMRMLTableNode* tableNode);",),
    "Modules/Loadable/Plots/Logic/vtkSlicerPlotsLogic.h": ("void ShowChartInLayout(vtkMRMLPlotChartNode* chartNode);",),
    "Base/Python/slicer/util.py": ("def loadScene(filename, properties={}):", 'filetype = "SceneFile"'),
    # a bundle is imported into the scene unless the "clear" property says otherwise
    "Base/QTCore/qSlicerSceneBundleReader.cxx": ("bool clear = false;", "ReadFromMRB(file.toUtf8(), clear"),
    "Libs/MRML/Core/vtkMRMLScene.h": ("int IsNodePresent(vtkMRMLNode* n);", "void RemoveNode(vtkMRMLNode* n);"),
    "Libs/MRML/Core/vtkMRMLPlotChartNode.h": ("void RemoveAllPlotSeriesNodeIDs();",
                                              "void AddAndObservePlotSeriesNodeID(const char* plotSeriesNodeID);",
                                              "vtkSetStringMacro(XAxisTitle);", "vtkSetStringMacro(YAxisTitle);",
                                              "vtkSetMacro(LegendVisibility, bool);"),
    "Libs/MRML/Core/vtkMRMLPlotSeriesNode.h": ("vtkSetMacro(LabelColumnName, std::string);",
                                               "vtkSetMacro(MarkerSize, float);", "vtkSetMacro(LineWidth, float);",
                                               "PlotTypeScatter,", "MarkerStyleCircle,", "LineStyleDash,"),
    "Libs/MRML/Core/vtkMRMLTableNode.h": ("bool RemoveAllColumns();", "vtkSetMacro(UseFirstColumnAsRowHeader, bool);"),
}
SLICER_SOURCE = pathlib.Path(os.environ.get("SLICER_SOURCE_GIT", "/work/.mirror/Slicer+Slicer/repo"))


def test_the_follow_up_section_delegates_to_the_engine_and_calls_the_checked_apis():
    widget = _methods(f"{MODULE_NAME}Widget")
    logic = _methods(f"{MODULE_NAME}Logic")
    source = MODULE_FILE.read_text(encoding="utf-8")
    for signal, slot in (("studyFolderPathLineEdit.connect(\"currentPathChanged(QString)\"", "self._updateButtonStates"),
                         ("loadStudyButton.connect(\"clicked(bool)\"", "self.onLoadStudyButton"),
                         ("followUpPatientComboBox.connect(\"currentIndexChanged(int)\"", "self.onFollowUpPatientChanged"),
                         ("followUpLesionComboBox.connect(\"currentIndexChanged(int)\"", "self.onFollowUpLesionChanged"),
                         ("openExamSceneButton.connect(\"clicked(bool)\"", "self.onOpenExamSceneButton")):
        assert f"self.ui.{signal}, {slot})" in source, signal
    assert "self.logic.loadStudy(self.ui.studyFolderPathLineEdit.currentPath)" in ast.unparse(widget["onLoadStudyButton"])
    shown = ast.unparse(widget["onFollowUpLesionChanged"])
    assert "self.logic.showFollowUp(self._study, patient, lesion, self._followUpNodes)" in shown
    assert "self.ui.followUpTableView.setMRMLTableNode(self._followUpNodes.response_table)" in shown
    assert "slicer.modules.plots.logic().ShowChartInLayout(self._followUpNodes.chart)" in shown
    assert "self._followUpNodes = None" in ast.unparse(widget["onSceneStartClose"])
    assert "read_study_folder(folder)" in ast.unparse(logic["loadStudy"])
    show = ast.unparse(logic["showFollowUp"])
    assert "add_follow_up_nodes(slicer.mrmlScene, study, patient, lesion, nodes)" in show
    assert "slicer.mrmlScene.IsNodePresent(node)" in show
    opened = ast.unparse(logic["openExamScene"])
    assert "slicer.util.loadScene(path)" in opened and "study.exam_scenes(patient, exam)" in opened
    for method in ("loadStudy", "showFollowUp", "openExamScene"):  # the engine builds the nodes
        assert "AddNewNodeByClass" not in ast.unparse(logic[method]) and "vtkMRML" not in ast.unparse(logic[method])


needs_slicer_source = pytest.mark.skipif(
    not (SLICER_SOURCE / "HEAD").exists() and not (SLICER_SOURCE / ".git").exists(),
    reason="no Slicer source checkout (set SLICER_SOURCE_GIT to a clone with the 5.12 branch)")


def _git_show(repository: pathlib.Path, revision: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repository), "show", f"{revision}:{path}"], capture_output=True,
                          text=True, check=True).stdout


def _assert_declared_in_slicer_5_12(apis: dict[str, tuple[str, ...]]) -> None:
    for path, names in apis.items():
        text = _git_show(SLICER_SOURCE, "5.12", path)
        for name in names:
            assert name in text, f"{path} (5.12) does not declare {name!r}"


@needs_slicer_source
def test_the_follow_up_apis_are_declared_in_slicer_5_12():
    _assert_declared_in_slicer_5_12(FOLLOW_UP_APIS)


# ----------------------------------------------------------------------------------------------
# PET/CT section

# The Slicer 5.12 sources that define each API the PET/CT section (DCEUSResponseWidgets/pet_ct_section.py,
# scene/pet_ct.py, scene/pet_ct_measure.py) calls or relies on. The MRML calls also run for real in
# test_scene_pet_ct.py (slicer-core); the Qt and DICOM-database ones are checked here only.
PET_CT_APIS = {
    # the files behind a volume loaded by the DICOM browser
    "Modules/Scripted/DICOMPlugins/DICOMScalarVolumePlugin.py": ('volumeNode.SetAttribute("DICOM.instanceUIDs", '
                                                                 'instanceUIDs)',),
    "Docs/developer_guide/script_repository/dicom.md": ("slicer.dicomDatabase.fileForInstance(instanceUIDs[0])",),
    "Modules/Scripted/DICOMLib/DICOMUtils.py": ("def loadSeriesByUID(seriesUIDs, messages=None",
                                                ":return: List of loaded node ids.",
                                                "def importDicom(dicomDataDir, dicomDatabase=None, copyFiles=False):",
                                                "class TemporaryDICOMDatabase:"),
    # SUV marks of a volume (PETDICOMExtension's plugin sets them; the engine's derived node too)
    "Libs/MRML/Core/vtkMRMLScalarVolumeNode.h": ("void SetVoxelValueUnits(vtkCodedEntry*);",
                                                 "vtkGetObjectMacro(VoxelValueUnits, vtkCodedEntry);",
                                                 "void SetVoxelValueQuantity(vtkCodedEntry*);"),
    "Libs/MRML/Core/vtkCodedEntry.h": ("vtkGetStringMacro(CodeValue);",
                                       "virtual void SetValueSchemeMeaning(const std::string& value, const std::string& "
                                       "scheme, const std::string& meaning);"),
    # point lists: positions, labels, status, selection; placing one point at a given index
    "Libs/MRML/Core/vtkMRMLMarkupsNode.h": ("int GetNumberOfControlPoints();",
                                            "int AddControlPoint(double x, double y, double z, std::string label = "
                                            "std::string());",
                                            "void GetNthControlPointPosition(int pointIndex, double point[3]);",
                                            "int GetNthControlPointPositionWorld(int pointIndex, double worldxyz[3]);",
                                            "int GetNthControlPointPositionStatus(int pointIndex);",
                                            "PositionUndefined,", "PositionDefined,",
                                            "void UnsetNthControlPointPosition(int pointIndex);",
                                            "void SetControlPointPlacementStartIndex(int);",
                                            "std::string GetNthControlPointLabel(int n = 0);",
                                            "void SetNthControlPointLabel(int n, std::string label);",
                                            "void SetNthControlPointSelected(int n, bool flag);"),
    "Modules/Loadable/Markups/VTKWidgets/vtkSlicerMarkupsWidget.cxx": (
        "updatePointID = markupsNode->GetControlPointPlacementStartIndex();",),
    "Modules/Loadable/Markups/qSlicerMarkupsModuleWidget.cxx": ("d->MarkupsNode->UnsetNthControlPointPosition(index);",),
    # unselected points are drawn in Color, selected ones in SelectedColor: the flagged pair's colour
    "Modules/Loadable/Markups/VTKWidgets/vtkSlicerMarkupsWidgetRepresentation.cxx": (
        "case Unselected: this->MarkupsDisplayNode->GetColor(color); break;",
        "case Selected: this->MarkupsDisplayNode->GetSelectedColor(color); break;"),
    "Libs/MRML/Core/vtkMRMLDisplayNode.h": ("vtkSetVector3Macro(Color, double);",
                                            "vtkSetVector3Macro(SelectedColor, double);"),
    "Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h": (
        "void SetActiveList(vtkMRMLMarkupsNode* markupsNode);",
        "bool StartPlaceMode(bool persistent, vtkMRMLInteractionNode* interactionNode = nullptr);"),
    # the CEUS nodes under the registration
    "Libs/MRML/Core/vtkMRMLTransformNode.h": ("virtual int SetMatrixTransformToParent(vtkMatrix4x4* matrix);",),
    "Libs/MRML/Core/vtkMRMLTransformableNode.h": ("bool SetAndObserveTransformNodeID(const char* transformNodeID);",),
    "Libs/MRML/Core/vtkMRMLScene.h": ("vtkMRMLNode* GetFirstNodeByName(const char* name);",),
    "Modules/Loadable/Sequences/MRML/vtkMRMLSequenceBrowserNode.h": ("GetSynchronizedSequenceNodes(",
                                                                     "vtkMRMLNode* GetProxyNode(vtkMRMLSequenceNode*"),
    # the widgets
    "Libs/MRML/Widgets/qMRMLNodeComboBox.h": ("Q_INVOKABLE vtkMRMLNode* currentNode() const;",
                                              "void setCurrentNode(vtkMRMLNode* node);",
                                              "void currentNodeChanged(vtkMRMLNode* node);"),
    "Libs/MRML/Widgets/qMRMLTableView.h": ("void setMRMLTableNode(vtkMRMLTableNode* tableNode);",),
    "Libs/MRML/Core/vtkMRMLLayoutNode.h": ("SlicerLayoutFourUpView = 3,", "SlicerLayoutSideBySideView = 29,"),
    "Libs/MRML/Core/vtkMRMLTableNode.h": ("bool RemoveAllColumns();",),
    # Place pair's views: the clip's frame in its plane beside the CT (scene/fusion_views.placement_views)
    "Libs/MRML/Widgets/qMRMLLayoutManager.h": ("Q_PROPERTY(int layout READ layout WRITE setLayout",),
    "Base/Python/slicer/util.py": ("def resetSliceViews():",),
    "Libs/MRML/Core/vtkMRMLSliceNode.h": ("void RotateToVolumePlane(vtkMRMLVolumeNode* volumeNode",
                                          "bool SetOrientation(const char* orientation);"),
    "Libs/MRML/Core/vtkMRMLSliceCompositeNode.h": ("void SetBackgroundVolumeID(const char* id);",
                                                   "void SetForegroundVolumeID(const char* id);"),
}
# PETDICOMExtension (QIICR/Slicer-PETDICOMExtension): how its plugins mark a volume converted to SUVbw.
PETDICOM_SOURCE = pathlib.Path(os.environ.get("PETDICOM_SOURCE_GIT", "/work/.mirror/QIICR+Slicer-PETDICOMExtension/repo"))
PETDICOM_MARKS = {
    "DICOMRWVMPlugin/DICOMRWVMPlugin.py": ('imageNode.SetAttribute("DICOM.RWV.instanceUID", derivedItemUID)',
                                           "imageNode.SetVoxelValueUnits(loadable.units)",
                                           "multiplier.SetConstantK(float(conversionFactor))"),
    "SUVFactorCalculatorCLI/SUVFactorCalculator.cxx": ('DSRCodedEntryValue("{SUVbw}g/ml","UCUM","Standardized Uptake '
                                                       'Value body weight")',),
}


@needs_slicer_source
def test_the_pet_ct_apis_are_declared_in_slicer_5_12():
    _assert_declared_in_slicer_5_12(PET_CT_APIS)


@pytest.mark.skipif(not (PETDICOM_SOURCE / "HEAD").exists() and not (PETDICOM_SOURCE / ".git").exists(),
                    reason="no PETDICOMExtension checkout (set PETDICOM_SOURCE_GIT)")
def test_the_suv_marks_are_petdicom_extensions():
    from DCEUSResponseLib.scene import pet_ct

    for path, names in PETDICOM_MARKS.items():
        text = _git_show(PETDICOM_SOURCE, "HEAD", path)
        for name in names:
            assert name in text, f"PETDICOMExtension {path} does not contain {name!r}"
    assert pet_ct.RWV_ATTRIBUTE == "DICOM.RWV.instanceUID"
    assert pet_ct.SUVBW_UNITS == ("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")


def _section_classes() -> dict[str, ast.ClassDef]:
    return _classes(_tree(PET_CT_SECTION))


def test_the_pet_ct_section_is_thin_and_has_the_modules_one_error_path():
    classes = _section_classes()
    section = {n.name: n for n in classes["PetCtSection"].body if isinstance(n, ast.FunctionDef)}
    for name in ("onPlacePairButton", "onRegisterButton", "onLoadTransformButton", "onMeasureButton"):
        source = ast.unparse(section[name])
        assert "with self.widget._errorDisplay(" in source, name
        assert not [h for h in ast.walk(section[name]) if isinstance(h, ast.ExceptHandler)], name
    init = ast.unparse(section["__init__"])
    for button, slot in (("petCtPlacePairButton", "onPlacePairButton"), ("petCtRegisterButton", "onRegisterButton"),
                         ("petCtLoadTransformButton", "onLoadTransformButton"), ("petCtMeasureButton", "onMeasureButton")):
        assert f"ui.{button}.connect('clicked(bool)', self.{slot})" in init, button
    place = ast.unparse(section["onPlacePairButton"])
    assert "next_pair_point(ceusList, ctList)" in place and "self._showPlacementViews()" in place
    views = ast.unparse(section["_showPlacementViews"])
    assert "placement_views(slicer.mrmlScene, ceusVolume, ctNode" in views and "SlicerLayoutSideBySideView" in views
    assert "slicer.modules.markups.logic()" in place and "markupsLogic.SetActiveList(target)" in place
    assert "markupsLogic.StartPlaceMode(False)" in place
    logic = {n.name: ast.unparse(n) for n in classes["PetCtLogic"].body if isinstance(n, ast.FunctionDef)}
    assert "register_point_lists(ceusList, ctList, inputs)" in logic["register"]
    assert "place_ceus_nodes(" in logic["register"] and "flag_pair([ceusList, ctList], result.flagged)" in logic["register"]
    assert "read_transform(path)" in logic["loadTransform"]
    assert "measure_pet_ct(" in logic["measure"] and "volume_source(ctNode, work, 'ct', database)" in logic["measure"]
    assert "slicer.dicomDatabase" in logic["measure"] and "shutil.rmtree(work" in logic["measure"]
    for source in logic.values():  # the engine's scene rooms build every node and table
        assert "AddNewNodeByClass" not in source and "AddColumn" not in source
    module = MODULE_FILE.read_text(encoding="utf-8")
    assert "self._petCt = PetCtSection(self)" in module and "self._petCt.reset()" in module
    assert "self._mapNodes = outputs.mapNodes" in module


def test_the_self_test_runs_the_pet_ct_section():
    tests = _methods(f"{MODULE_NAME}Test")
    assert "self.test_DCEUSResponse_petCt()" in ast.unparse(tests["runTest"])
    source = ast.unparse(tests["test_DCEUSResponse_petCt"])
    for call in ("DICOMUtils.TemporaryDICOMDatabase(", "DICOMUtils.loadSeriesByUID(", "logic.register(",
                 "logic.measure(", "DEMO_LESION_VALUES", "LIVER_SUV"):
        assert call in source, call


def test_the_pet_ct_widgets_are_in_the_ui():
    widgets = {w.get("name"): w for w in _ui_widgets()}
    for name, types in (("petCtCtSelector", "vtkMRMLScalarVolumeNode"), ("petCtPetSelector", "vtkMRMLScalarVolumeNode"),
                        ("petCtCeusPointsSelector", "vtkMRMLMarkupsFiducialNode"),
                        ("petCtCtPointsSelector", "vtkMRMLMarkupsFiducialNode")):
        assert widgets[name].get("class") == "qMRMLNodeComboBox"
        assert [s.text for s in _property(widgets[name], "nodeTypes").iter("string")] == [types]
    for name in ("petCtCeusPointsSelector", "petCtCtPointsSelector"):  # "+ create"
        assert _property(widgets[name], "addEnabled").findtext("bool") == "true"
    for name in ("petCtPlacePairButton", "petCtRegisterButton", "petCtLoadTransformButton", "petCtMeasureButton"):
        assert widgets[name].get("class") == "QPushButton"
        assert _property(widgets[name], "enabled").findtext("bool") == "false"
    assert widgets["petCtTransformPathLineEdit"].get("class") == "ctkPathLineEdit"
    assert widgets["petCtTableView"].get("class") == "qMRMLTableView"
