"""Scoring a search's settings on other processes or machines (Ray actors that
each loaded the same model, vectors and fitness)."""
