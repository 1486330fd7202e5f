"""SA-Med2D-style standardization: canonical orientation, 2D slices, 8-bit RGB, instance regions."""
