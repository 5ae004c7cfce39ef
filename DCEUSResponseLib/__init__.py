"""DCEUSResponseLib: the quantification engine of the DCEUSResponse 3D Slicer extension.

Reads contrast-enhanced ultrasound cine clips, linearises them to echo power, extracts
time-intensity curves in regions of interest, fits bolus models and reports perfusion parameters.
Importable without Slicer; only the standard library, numpy, scipy and vtk are imported at module
top level anywhere in this package (pydicom and others are imported where they are used).
"""

__version__ = "0.1.0"
SOFTWARE_NAME = "DCEUSResponse"
