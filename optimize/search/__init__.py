"""How the space of layers and strengths is searched: the loop every strategy
runs in (cache, cancel, history, random state) and the strategies behind a
registry (PSO by default; Optuna's TPE and CMA-ES)."""
