"""Benchmarks of steering and of the optimizer's fitness (`python -m bench`).

(a) generation speed steered / unsteered, (b) one particle evaluation against
the 2024 prototype's way and against the bare forward passes, with the prefix
cache's scaling, (c) a whole optimization. Every figure is a ratio of variants
timed side by side in interleaved rounds. Results are printed as markdown and
written as JSON under bench/results/.
"""
