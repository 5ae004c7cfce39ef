"""Geometry: the CEUS frame geometry; later registration and resampling."""
