"""PET: SUV from the header (suv.py) and per-lesion measures on the CEUS footprint and in 3D (lesion.py)."""
