"""Readers: clips (DICOM, video), ROI masks; later CT/PET series. Read only, never write."""
