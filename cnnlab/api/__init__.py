"""The public Python API (re-exported as `cnnlab.train`, `cnnlab.Run`, ...; see cnnlab/__init__.py):
training.py (build, train, resume), run.py (Run: a run directory from Python), studies.py
(study, compare, analyze, report). The command line calls these."""
