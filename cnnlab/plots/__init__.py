"""Figures the training loop, evaluation and the analyses draw (curves, samples, confusion
matrices): below training/ and analysis/, which both use them."""

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    # Figures are files; never open a window. In a Jupyter kernel the inline backend stays, so the
    # figures the Python API returns (cnnlab.Run(...).plot()) show in the notebook.
    matplotlib.use("Agg")
