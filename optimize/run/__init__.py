"""One optimization from start to end: its assembly from the settings, the
run itself (baseline, search, finalists confirmed, held-out check), its
journal for resuming, its result file and the report printed from it."""
