"""fuse: the CEUS plane in the patient's CT / SSTR-PET (registration, resampling, per-ROI PET/CT measures)."""
