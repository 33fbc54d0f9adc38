"""Figures and numbers drawn from run directories: curves and confusion matrices (written by
train and evaluate), and the analyses of `cnnlab analyze` (registry.py)."""

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
