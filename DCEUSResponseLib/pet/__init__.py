"""PET: SUV from the header (``suv.py``); lesion measures on the CEUS plane come later."""
