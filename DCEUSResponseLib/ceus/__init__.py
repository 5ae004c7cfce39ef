"""One CEUS clip: display layout, linearisation, motion, frame quality, TICs, maps and the analysis pipeline."""
