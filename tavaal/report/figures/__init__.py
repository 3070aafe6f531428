"""Figures of finished experiments; plot functions return the matplotlib Figure so tests can
inspect what was drawn. Figures that need a task model (true loss, decision boundary) load the
stage checkpoint through the library."""

import matplotlib

# No display on cluster nodes or in tests; set before any submodule imports pyplot.
matplotlib.use("Agg")
