"""Per-request steering for an API server: no HTTP here (that is ui/api).

- `spec`: the request's `steering` field, checked (EasySteer's names where
  they mean the same);
- `catalog`: the vectors a request may choose (the active set, the saved
  files) and its choice turned into vectors;
- `prompts`: a chat or completion request's tokens, checked against the
  model's context;
- `rows`: one batched generation with one steering setting per row;
- `queue`: requests waiting for the model lock, served together.
"""

from steering.serving.catalog import CatalogEntry, VectorCatalog
from steering.serving.queue import GenerationQueue, Job, QueueStatus, Ticket
from steering.serving.rows import Row, RowRequest, RowResult, Sampling, generate_rows
from steering.serving.spec import SteeringChoice, VectorChoice, parse_steering

__all__ = [
    "CatalogEntry",
    "GenerationQueue",
    "Job",
    "QueueStatus",
    "Row",
    "RowRequest",
    "RowResult",
    "Sampling",
    "SteeringChoice",
    "Ticket",
    "VectorCatalog",
    "VectorChoice",
    "generate_rows",
    "parse_steering",
]
