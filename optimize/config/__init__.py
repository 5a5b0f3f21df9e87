"""A run's settings: the one table every setting is declared in (`table`), and
the validated values built from it (the task, the swarm, the search space and
the split and guard settings)."""
