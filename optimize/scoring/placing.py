"""Where a setting meets the model's vectors: which active vector a result
tuned (found again by id), the vector list a setting stands for, and the one
scoring of a setting that the driver and every Ray worker run alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optimize.config.space import SearchSpace, Setting
from optimize.scoring.metrics import Fitness, Metrics
from steering.capture import recapture
from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.vector import SteeringVector


@dataclass(frozen=True)
class VectorRecord:
    """Which vector a selected vector was, so `apply_best` can find it again
    among the active vectors: by its stable `vector_id` (None in results written
    before vectors had ids, which are found by position and prompts)."""

    index: int
    layer: int
    alpha: float
    prompts: tuple[str, ...]
    contrast_prompts: tuple[str, ...] = ()
    vector_id: str | None = None
    # What made a vector without prompts (a task vector, a GGUF direction),
    # for people: the summary showed such a vector as "Vector #2 ()".
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.vector_id,
            "index": self.index,
            "layer": self.layer,
            "alpha": self.alpha,
            "prompts": list(self.prompts),
            "contrast_prompts": list(self.contrast_prompts),
        }
        # Only where there are no prompts: a prompt vector's record (part of
        # a journal's run identity) stays as older journals wrote it.
        if self.summary and not self.prompts:
            data["summary"] = self.summary
        return data

    def describe(self) -> str:
        """The vector in a few words, for people: its prompts, else what made it."""
        text = " | ".join(self.prompts) or self.summary or "a vector without prompts"
        return text if len(text) <= 40 else text[:39] + "…"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorRecord:
        vector_id = data.get("id")
        return cls(
            index=int(data["index"]),
            layer=int(data["layer"]),
            # Version 1 results called the alpha "coeff".
            alpha=float(data["alpha"] if "alpha" in data else data["coeff"]),
            prompts=tuple(data["prompts"]),
            contrast_prompts=tuple(data.get("contrast_prompts", ())),
            vector_id=None if vector_id is None else str(vector_id),
            summary=str(data.get("summary", "")),
        )


@dataclass(frozen=True)
class TunedVector:
    """One optimized vector and the layer and alpha a setting gives it."""

    vector: VectorRecord
    layer: int
    alpha: float


def tune(vectors: Sequence[VectorRecord], setting: Setting) -> tuple[TunedVector, ...]:
    """Each vector with its layer and alpha in `setting` (one pair per vector,
    in order)."""
    return tuple(
        TunedVector(vector, layer, alpha)
        for vector, layer, alpha in zip(vectors, setting.layers, setting.alphas, strict=True)
    )


def record_of(index: int, vector: SteeringVector) -> VectorRecord:
    return VectorRecord(
        index=index,
        layer=vector.layer,
        alpha=vector.alpha,
        prompts=vector.prompts,
        contrast_prompts=vector.contrast_prompts,
        vector_id=vector.id,
        summary=vector.summary(60),
    )


def position_of(current: Sequence[SteeringVector], record: VectorRecord) -> int:
    """Where the vector `record` describes is among `current`, or
    InvalidInputError. The one place a result finds its vectors again: by id
    (a vector keeps its id when it is recaptured or rescaled, so a result can be
    applied again after Apply best), or for results without ids by position."""
    if record.vector_id is not None:
        for position, vector in enumerate(current):
            if vector.id == record.vector_id:
                return position
        raise InvalidInputError(
            "The active vectors changed since this optimization ran: the vector made from "
            f"{' | '.join(record.prompts)[:60]!r} is no longer active. Restore it (load its "
            "vector file), then apply again."
        )
    index = record.index
    if (
        index < len(current)
        and current[index].prompts == record.prompts
        and current[index].contrast_prompts == record.contrast_prompts
    ):
        return index
    raise InvalidInputError(
        f"The active vectors changed since this optimization ran: vector "
        f"{index + 1} is no longer the one made from "
        f"{' | '.join(record.prompts)[:60]!r}. Restore those vectors, then apply again."
    )


class Placer:
    """Builds the vector list a setting stands for: the active vectors, each
    tuned one recaptured at its layer and scaled by its alpha. A direction only
    means something at its own layer, so the concept is recaptured there
    (once per vector and layer; outside `applied`: capturing swaps vectors)."""

    def __init__(self, steerer: Steerer, vectors: Sequence[SteeringVector]) -> None:
        self.steerer = steerer
        self.vectors = tuple(vectors)
        self._recaptured: dict[tuple[int, int], SteeringVector] = {}

    def _at(self, index: int, layer: int) -> SteeringVector:
        base = self._recaptured.get((index, layer))
        if base is None:
            base = recapture(self.steerer, self.vectors[index], layer)
            self._recaptured[(index, layer)] = base
        return base

    def unit_alpha(self, index: int, layer: int) -> float:
        """The alpha of strength 1 for vector `index` at `layer` (the layer's
        mean state norm / |V| there): what a strength bound is multiplied by."""
        base = self._at(index, layer)
        if base.norm == 0.0:
            raise InvalidInputError(
                f"The vector's direction at layer {layer} is zero, so no alpha gives a strength."
            )
        return self.steerer.layer_norm(layer) / base.norm

    def place(self, tuned: Sequence[TunedVector]) -> list[SteeringVector]:
        """The vectors with each of `tuned` in place (InvalidInputError when
        one is no longer among them)."""
        vectors = list(self.vectors)
        for item in tuned:
            index = position_of(self.vectors, item.vector)
            vectors[index] = self._at(index, item.layer).with_alpha(item.alpha)
        return vectors



class SettingScorer:
    """Scores a setting of the selected vectors (`indices` of `vectors`) with
    `fitness`: the vectors, the selected ones recaptured at the setting's
    layers and scaled by its alphas. Built once per run, in the driver or in
    a worker that loaded the same model and vectors, so both score alike."""

    def __init__(
        self,
        steerer: Steerer,
        vectors: Sequence[SteeringVector],
        indices: Sequence[int],
        fitness: Fitness,
    ) -> None:
        self.records = tuple(record_of(i, vectors[i]) for i in indices)
        self.placer = Placer(steerer, vectors)
        self.fitness = fitness

    def to_alphas(self, space: SearchSpace, setting: Setting) -> Setting:
        """`setting` as alphas when `space` searches strengths (the i-th
        coefficient is the i-th selected vector's; see SearchSpace.to_alphas)."""
        return space.to_alphas(setting, self._unit_alpha)

    def _unit_alpha(self, i: int, layer: int) -> float:
        return self.placer.unit_alpha(position_of(self.placer.vectors, self.records[i]), layer)

    def vectors_of(self, setting: Setting) -> list[SteeringVector]:
        """The vectors `setting` stands for (the baseline's, `base`, for no setting)."""
        if not setting.layers:
            return self.base
        return self.placer.place(tune(self.records, setting))

    @property
    def base(self) -> list[SteeringVector]:
        """The vectors every setting keeps: the active ones not being tuned.
        The baseline is scored with exactly these, so a setting and the
        baseline differ only by the tuned vectors."""
        tuned = {position_of(self.placer.vectors, record) for record in self.records}
        return [v for i, v in enumerate(self.placer.vectors) if i not in tuned]

    def __call__(self, setting: Setting) -> Metrics:
        return self.fitness.metrics(self.vectors_of(setting))

    def document_scores(self, setting: Setting) -> tuple[Metrics, tuple[float, ...]]:
        """The metrics and per-document target values of `setting`."""
        return document_scores(self.fitness, self.vectors_of(setting))


def document_scores(
    fitness: Fitness, vectors: Sequence[SteeringVector]
) -> tuple[Metrics, tuple[float, ...]]:
    """A fitness's metrics with its per-document values (none when it cannot say them)."""
    scores = getattr(fitness, "document_scores", None)
    if scores is None:
        return fitness.metrics(vectors), ()
    metrics, values = scores(vectors)
    return metrics, tuple(values)
