"""Figures drawn from run directories: curves, confusion matrices."""

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
