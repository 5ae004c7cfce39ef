"""The codes the DICOM outputs use, as plain tables: one entry per quantity of the contracts.

Every table maps a name to ``(code value, coding scheme designator, code meaning, UCUM unit)``.
Standard codes come from DICOM PS3.16 (scheme ``DCM``; CID 4109 "Model-Independent Dynamic
Contrast Analysis Parameter" where one exists, else CID 4108 "Perfusion Model Parameter"), SNOMED
CT (``SCT``) and UCUM; quantities without a standard concept get a code of the private coding
scheme :data:`PRIVATE_SCHEME` (documented in ``docs/quantification-contract.md``, "DICOM outputs").
The tables are plain data (no pydicom) so that the parameter catalogue can take them over.
"""
from __future__ import annotations

Code = tuple[str, str, str, str]  # (value, scheme designator, meaning, UCUM unit)

PRIVATE_SCHEME = "99DCEUS"
PRIVATE_SCHEME_NAME = "DCEUSResponse private concepts"
PRIVATE_SCHEME_VERSION = "1.0"
PRIVATE_SCHEME_RESPONSIBLE = "DCEUSResponse project"

ARBITRARY_UNIT = "[arb'U]"

#: Perfusion parameters of ``results.json`` (bolus and replenishment) by contract name.
PARAMETER_CODES: dict[str, Code] = {
    # CID 4109: "Maximum Difference" is the largest signal change from the pre-contrast baseline.
    "PE": ("126376", "DCM", "Maximum Difference", ARBITRARY_UNIT),
    "TTP": ("113069", "DCM", "Time To Peak", "s"),  # CID 4108 / 4109
    "WiR": ("126375", "DCM", "Maximum Slope", f"{ARBITRARY_UNIT}/s"),  # CID 4109
    "WoR": ("DCEUS0004", PRIVATE_SCHEME, "Wash-out rate", f"{ARBITRARY_UNIT}/s"),
    "TI": ("DCEUS0005", PRIVATE_SCHEME, "Tangent intercept time of wash-in", "s"),
    "TO": ("DCEUS0006", PRIVATE_SCHEME, "Tangent intercept time of wash-out", "s"),
    "RT": ("DCEUS0007", PRIVATE_SCHEME, "Rise time", "s"),
    "FT": ("DCEUS0008", PRIVATE_SCHEME, "Fall time", "s"),
    "mTTl": ("DCEUS0009", PRIVATE_SCHEME, "Local mean transit time", "s"),
    "WiAUC": ("DCEUS0010", PRIVATE_SCHEME, "Wash-in area under the curve", f"{ARBITRARY_UNIT}.s"),
    "WoAUC": ("DCEUS0011", PRIVATE_SCHEME, "Wash-out area under the curve", f"{ARBITRARY_UNIT}.s"),
    "WiWoAUC": ("DCEUS0012", PRIVATE_SCHEME, "Wash-in wash-out area under the curve", f"{ARBITRARY_UNIT}.s"),
    "WiPI": ("DCEUS0013", PRIVATE_SCHEME, "Wash-in perfusion index", ARBITRARY_UNIT),
    "AUC": ("DCEUS0014", PRIVATE_SCHEME, "Area under the enhancement curve", f"{ARBITRARY_UNIT}.s"),
    "QOF": ("DCEUS0015", PRIVATE_SCHEME, "Quality of fit", "%"),
    # destruction-replenishment; CID 4108 where the concept is the same
    "rBV": ("126398", "DCM", "Relative Regional Blood Volume", ARBITRARY_UNIT),
    "mTT": ("113052", "DCM", "Mean Transit Time", "s"),
    "rBF": ("126397", "DCM", "Relative Regional Blood Flow", f"{ARBITRARY_UNIT}/s"),
    "PI": ("DCEUS0020", PRIVATE_SCHEME, "Replenishment perfusion index", f"{ARBITRARY_UNIT}/s"),
}

#: PET / CT measures of ``fusion.json`` by ``<group>.<name>`` (measure concept, with a derivation below).
FUSION_CODES: dict[str, Code] = {
    "pet.SUVmax": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet.SUVmean": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet.SUVpeak": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet.voxels": ("DCEUS0030", PRIVATE_SCHEME, "Number of voxels in footprint", "{voxels}"),
    "pet.TLR": ("126039", "DCM", "Lesion to Background SUV Ratio", "{ratio}"),
    "ct.HU_mean": ("112031", "DCM", "Attenuation Coefficient", "[hnsf'U]"),
    "pet3d.SUVmax": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet3d.SUVmean": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet3d.SUVpeak": ("126401", "DCM", "SUVbw", "g/ml{SUVbw}"),
    "pet3d.volume_ml": ("118565006", "SCT", "Volume", "ml"),
    "pet3d.TLU": ("DCEUS0031", PRIVATE_SCHEME, "Total lesion uptake", "g{SUVbw}"),
    "pet3d.distance_mm": ("121206", "DCM", "Distance", "mm"),
}

#: Derivation modifiers (TID 300 "Derivation") of the fusion measures that need one.
FUSION_DERIVATIONS: dict[str, tuple[str, str, str]] = {
    "SUVmax": ("56851009", "SCT", "Maximum"),
    "SUVmean": ("373098007", "SCT", "Mean"),
    "SUVpeak": ("126031", "DCM", "Peak Value Within ROI"),
    "HU_mean": ("373098007", "SCT", "Mean"),
}

#: Measurement methods: where a fusion measure was taken.
METHOD_CODES: dict[str, tuple[str, str, str]] = {
    "pet": ("DCEUS0040", PRIVATE_SCHEME, "PET footprint of the CEUS ROI in the elevational slab"),
    "ct": ("DCEUS0041", PRIVATE_SCHEME, "CT footprint of the CEUS ROI in the elevational slab"),
    "pet3d": ("DCEUS0042", PRIVATE_SCHEME, "PET 3D lesion segment"),
    "kinetic_fit": ("DCEUS0043", PRIVATE_SCHEME, "Time-intensity curve model fit"),
}

#: The derivation that marks a reference-normalised value (ROI value / reference ROI value).
RELATIVE_DERIVATION = ("DCEUS0050", PRIVATE_SCHEME, "Relative to reference ROI")
RELATIVE_UNIT = "{ratio}"

#: Fit status of an ROI as a qualitative evaluation (concept, then one value per status).
FIT_STATUS_CONCEPT = ("DCEUS0060", PRIVATE_SCHEME, "Time-intensity curve fit status")
FIT_STATUS_VALUES: dict[str, tuple[str, str, str]] = {
    "ok": ("DCEUS0061", PRIVATE_SCHEME, "Fit accepted"),
    "no_enhancement": ("DCEUS0062", PRIVATE_SCHEME, "No enhancement"),
    "fit_failed": ("DCEUS0063", PRIVATE_SCHEME, "Fit failed"),
}

#: SEG segment properties per ROI role: (category, type) codes, and the anatomic region.
SEGMENT_ROLE_CODES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "lesion": (("49755003", "SCT", "Morphologically Abnormal Structure"),
               ("14799000", "SCT", "Neoplasm, Secondary")),
    "reference": (("91723000", "SCT", "Anatomical Structure"), ("10200004", "SCT", "Liver")),
    "necrosis": (("49755003", "SCT", "Morphologically Abnormal Structure"), ("6574001", "SCT", "Necrosis")),
}
ANATOMIC_REGION = ("10200004", "SCT", "Liver")

#: Procedure reported by the SR (TID 1500 "Procedure reported").
PROCEDURE_REPORTED = ("DCEUS0070", PRIVATE_SCHEME, "Dynamic contrast-enhanced ultrasound of liver")

#: Code meanings of the UCUM units above (UCUM codes carry their meaning in DICOM).
UCUM_MEANINGS: dict[str, str] = {
    ARBITRARY_UNIT: "arbitrary unit", f"{ARBITRARY_UNIT}/s": "arbitrary unit per second",
    f"{ARBITRARY_UNIT}.s": "arbitrary unit times second", "s": "second", "%": "Percent",
    "{ratio}": "ratio", "g/ml{SUVbw}": "Standardized Uptake Value body weight", "{voxels}": "voxels",
    "[hnsf'U]": "Hounsfield unit", "ml": "milliliter", "g{SUVbw}": "gram (SUVbw x ml)", "mm": "millimeter",
}
