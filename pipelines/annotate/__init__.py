"""MedTrinity-style multigranular ROI annotations computed from the slices/regions rows."""
