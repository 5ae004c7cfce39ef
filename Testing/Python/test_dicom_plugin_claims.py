"""How strongly the module's DICOM plugin claims a series, on real DICOM files.

Slicer's DICOMLib (Qt) cannot run here, so its two base classes are replaced by minimal stand-ins
that do what DICOMLib's do for ``examineFiles`` (a plain ``DICOMLoadable`` record and the loadable
cache of ``DICOMPlugin``); everything the plugin decides comes from the real header of each file
(``DCEUSResponseLib.io.ultrasound_kind``) and pydicom's real decoder registry.
"""
import importlib.util
import pathlib
import sys
import types

import pydicom
import pytest

from DCEUSResponseLib.io.ultrasound_kind import assess_ultrasound_header, decoding_problem
from DCEUSResponseLib.synthetic.clips import PerfusionRegion, make_clip, write_clip

PLUGIN_FILE = pathlib.Path(__file__).resolve().parents[2] / "DCEUSResponse" / "DCEUSResponseDICOMPlugin.py"


class _Loadable:
    def __init__(self):
        self.files, self.name, self.tooltip, self.warning = [], "", "", ""
        self.selected, self.confidence = False, 0.5


class _Plugin:
    def __init__(self):
        self.tags, self._cache = {}, {}

    def getCachedLoadables(self, files):
        return self._cache.get(tuple(files))

    def cacheLoadables(self, files, loadables):
        self._cache[tuple(files)] = loadables


class _NoDatabase:
    def fileValue(self, path, tag):
        raise RuntimeError("no DICOM database in this test")


@pytest.fixture(scope="module")
def plugin(monkeypatch_module):
    slicer = types.ModuleType("slicer")
    slicer.dicomDatabase = _NoDatabase()
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    dicomlib = types.ModuleType("DICOMLib")
    dicomlib.DICOMLoadable, dicomlib.DICOMPlugin = _Loadable, _Plugin
    for name, module in (("slicer", slicer), ("slicer.i18n", i18n), ("DICOMLib", dicomlib)):
        monkeypatch_module.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("DCEUSResponseDICOMPlugin_under_test", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.DCEUSResponseDICOMPluginClass()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _clip(path, display, description, agent=None):
    """A small clip; the synthetic writer names a contrast agent, kept only when ``agent`` is given."""
    region = PerfusionRegion("lesion", (40, 50), 12, {"O": 1e-3, "A": 0.2, "t0": 1.0, "mu": 1.5, "sigma": 0.5})
    clip = make_clip([region], panel_shape=(80, 100), n_frames=6, display=display)
    write_clip(clip, str(path), series_description=description)
    ds = pydicom.dcmread(path)
    if agent is None:
        del ds.ContrastBolusAgent
    else:
        ds.ContrastBolusAgent = agent
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_a_dual_display_contrast_clip_is_claimed_above_the_generic_plugins(plugin, tmp_path):
    module, instance = plugin
    path = _clip(tmp_path / "dual.dcm", "dual", "Liver")
    (loadable,) = instance.examineFiles([path])
    assert loadable.selected and loadable.confidence == module.CONTRAST_CLIP_CONFIDENCE > 0.7
    assert "dual display" in loadable.tooltip and not loadable.warning


def test_a_single_display_clip_is_contrast_only_when_the_header_says_so(plugin, tmp_path):
    module, instance = plugin
    (ceus,) = instance.examineFiles([_clip(tmp_path / "ceus.dcm", "single", "CEUS liver")])
    assert ceus.selected and ceus.confidence == module.CONTRAST_CLIP_CONFIDENCE
    assert "SeriesDescription names a contrast mode ('CEUS')" in ceus.tooltip
    (bmode,) = instance.examineFiles([_clip(tmp_path / "bmode.dcm", "single", "Echocardiography apical 4ch")])
    assert not bmode.selected and bmode.confidence == module.OTHER_CINE_CONFIDENCE < 0.5


def test_a_contrast_agent_in_the_header_is_evidence(tmp_path):
    ds = pydicom.dcmread(_clip(tmp_path / "agent.dcm", "single", "Abdomen"), stop_before_pixels=True)
    assert assess_ultrasound_header(ds).contrast_evidence is None
    ds = pydicom.dcmread(_clip(tmp_path / "agent.dcm", "single", "Abdomen", agent="SonoVue"), stop_before_pixels=True)
    assert assess_ultrasound_header(ds).contrast_evidence == "Contrast/Bolus Agent 'SonoVue'"


def test_words_inside_other_words_are_not_contrast_evidence(tmp_path):
    ds = pydicom.dcmread(_clip(tmp_path / "words.dcm", "single", "Abdomen"), stop_before_pixels=True)
    for text in ("Chinese patient", "Architecture", "Echo"):  # 'chi', 'cps' inside words
        ds.SeriesDescription = text
        assert assess_ultrasound_header(ds).contrast_evidence is None, text


def test_a_transfer_syntax_without_a_decoder_is_not_selected_and_says_what_is_missing(plugin, tmp_path):
    module, instance = plugin
    path = _clip(tmp_path / "lossless.dcm", "dual", "CEUS")
    ds = pydicom.dcmread(path)
    # The header claims JPEG Lossless (process 14): whether it decodes depends on the installed plugins.
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xd9"] * int(ds.NumberOfFrames))
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    problem = decoding_problem(pydicom.uid.JPEGLosslessSV1)
    (loadable,) = instance.examineFiles([path])
    if problem is None:
        pytest.skip("a JPEG Lossless decoder is installed here")
    assert "needs" in problem and "JPEG Lossless" in problem
    assert not loadable.selected and loadable.confidence == module.UNDECODABLE_CONFIDENCE
    assert problem in loadable.warning


def test_what_slicer_5_12_decodes():
    """Slicer 5.12 bundles pillow and pyjpegls: the clips scanners export (JPEG Baseline) decode."""
    assert decoding_problem(pydicom.uid.JPEGBaseline8Bit) is None
    assert decoding_problem(pydicom.uid.ExplicitVRLittleEndian) is None
    assert decoding_problem("1.2.3.4.999") and "no decoder" in decoding_problem("1.2.3.4.999")
