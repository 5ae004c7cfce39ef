"""Synthetic clips and DICOM writers for the demo and the tests (not engine logic)."""
