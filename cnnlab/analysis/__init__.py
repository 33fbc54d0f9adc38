"""The analyses of `cnnlab analyze` (registry.py, catalog.py, command.py): figures and numbers
drawn from a trained run."""

import cnnlab.plots  # noqa: F401  (selects the Agg backend outside notebooks)
