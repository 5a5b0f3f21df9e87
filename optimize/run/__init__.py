"""One optimization from start to end: its assembly from the settings, the
run itself (baseline, search, first round and finalists, held-out check), its
journal for resuming, its result file and the report printed from it."""
