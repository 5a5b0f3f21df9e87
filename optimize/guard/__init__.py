"""Keeping a recommendation honest: the KL guard against the unsteered model,
the objectives that rank settings with it, the held-out split and its paired
test, and the Pareto front of task score against KL."""
