"""Studies: ablations, grids and Bayesian searches of a base config, over seeds and folds,
run by parallel, crash-safe workers on Optuna's storage, with tables that say which
differences are real (see spec.py for the study file).
"""

STUDY_JSON = "study.json"  # what a study is (launch.describe writes it): the file that marks a study folder
