"""`cnnlab data audit`: duplicates, leaks across splits, conflicting labels and images worth a look.

source.py reads the dataset as training does (every format cnnlab reads); features.py computes one
pass of per-image numbers (exact digest, imagehash's pHash, a small grey thumbnail, brightness);
duplicates.py groups exact and near-duplicate images through a nearest-neighbour index (no
all-pairs comparison); quality.py finds the single-image problems; page.py draws audit.html;
clean.py writes --write-clean's manifest and data.exclude list; run.py ties them together and
writes the folder. labels.py (label issues from out-of-fold probabilities) is called by run.py for
--labels.
"""

import sys
import types


class _Callable(types.ModuleType):
    """`cnnlab.audit(config, ...)` is the Python API (cnnlab/api/audit.py) while `cnnlab.audit` is also
    this package: the package itself is made callable, so both read the same after any import order."""

    def __call__(self, config, **kwargs):  # noqa: ANN001, ANN204 - the signature is audit()'s
        from cnnlab.audit.run import audit

        return audit(config, **kwargs)


sys.modules[__name__].__class__ = _Callable
