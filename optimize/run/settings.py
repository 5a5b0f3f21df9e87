"""Every setting of one optimization run, checked once against the settings
table: what the command line's flags, the Optimize form's fields and a run's
journal give, by setting name.

`RunSettings.from_values` is the one place a run's settings are validated and
their configs built (the task, the held-out task, the guard task, the swarm,
the objective's limits, the document split), so a run typed on the command
line, entered in the form or resumed from a journal is refused or accepted
alike. What needs the model (the layer range, the vectors) is checked by the
run's assembly (optimize/run/assembly.py).

A mapping holds only the settings that were given; the others take the
table's default. Settings that contradict each other are refused naming both
(alpha bounds with unit strength, a held-out limit with no held-out task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimize.config.configs import FitnessConfig, PsoConfig
from optimize.config.space import SearchSpace
from optimize.config.table import BY_NAME, FIELDS, Field
from optimize.guard.objective import ObjectiveOptions, make_objective, uses_task
from optimize.guard.split import DocumentSplit
from optimize.scoring.concept import CONCEPT_METRIC, CONCEPT_TASK
from steering.errors import InvalidInputError

if TYPE_CHECKING:
    from optimize.scoring.task_sources import AllowedTaskSources

# How settings are named in messages: by their command-line flag or form label.
CLI_NAMES, FORM_NAMES = "cli", "form"

_ALPHA_BOUNDS = ("alpha_min", "alpha_max")
_STRENGTH_BOUNDS = ("strength_min", "strength_max")


def default_layer_range(num_layers: int) -> tuple[int, int]:
    """The layers searched when none are given: from about a tenth of the
    model to about 60 % of it, where steering changes behaviour without
    breaking text (the middle third of the layers worked best on SmolLM2,
    docs/explore.md)."""
    low = min(num_layers - 1, round(num_layers * 0.1))
    high = max(low, min(num_layers - 1, round(num_layers * 0.6)))
    return low, high


def _named(field: Field, naming: str) -> str:
    return field.cli_flag if naming == CLI_NAMES else f"“{field.label}”"


@dataclass(frozen=True)
class RunSettings:
    """A run's settings, each within the table's bounds, and the configs built
    from them. `values` holds every table setting by name (defaults filled
    in); `given` the checked values of those that were given, which is what
    a journal keeps to rebuild the run. Build it with `from_values`."""

    values: Mapping[str, Any]
    given: Mapping[str, Any]
    fitness: FitnessConfig
    pso: PsoConfig
    heldout: FitnessConfig | None
    guard_task: FitnessConfig | None
    options: ObjectiveOptions

    @classmethod
    def from_values(
        cls,
        given: Mapping[str, Any],
        *,
        sources: AllowedTaskSources | None = None,
        naming: str = CLI_NAMES,
    ) -> RunSettings:
        """The run `given` describes (setting name -> value; names it lacks
        take the table's default), or InvalidInputError naming what is wrong.

        With `sources` (the app's allowed task folders), the task folder must
        be one of them, as when a visitor picks it; without, any folder that
        exists (the command line's --include-path). `naming` says how
        messages name a setting: its flag (CLI_NAMES) or its label (FORM_NAMES).
        """
        unknown = sorted(set(given) - set(BY_NAME))
        if unknown:
            raise InvalidInputError(f"Unknown run settings: {', '.join(unknown)}.")
        values = {f.name: given.get(f.name, f.default) for f in FIELDS}
        _refuse_contradictions(given, values, naming)
        for f in FIELDS:
            if f.name == "task_folder" or values[f.name] is None:
                continue
            if f.name in ("limit", "heldout_limit") and values[f.name] == 0 and naming == CLI_NAMES:
                values[f.name] = None  # the command line's 0: every document
                continue
            values[f.name] = f.check(values[f.name])
        for name in ("heldout_task", "guard_task", "task"):
            if not values[name]:
                values[name] = None
        folder = values["task_folder"]
        if sources is not None:
            folder = sources.include_path(folder)
        elif folder is not None and not str(folder).strip():
            folder = None
        values["task_folder"] = folder
        options = ObjectiveOptions(values["kl_budget"], values["max_guard_drop"])
        make_objective(values["objective"], options=options)  # an unknown name fails here
        concept = not uses_task(values["objective"])
        if concept:
            folder = values["task_folder"] = None
            if values["heldout_task"] or values["guard_task"] or values["workers"]:
                raise InvalidInputError(
                    "Concept strength scores the vector's own held-out prompts in this "
                    "process: it takes no held-out task, guard task or Ray workers."
                )
            if values["holdout_fraction"] == 0:
                raise InvalidInputError(
                    "Concept strength scores a held-out share of the vector's prompts: set the "
                    "held-out share above 0 (0.5 holds out half of each list)."
                )
        elif values["task"] is None:
            raise InvalidInputError(
                f"Name the task to score ({_named(BY_NAME['task'], naming)}), or choose the "
                "concept objective, which scores no task."
            )
        fitness = FitnessConfig(
            task=CONCEPT_TASK if concept else values["task"],
            include_path=folder,
            metric=CONCEPT_METRIC if concept else values["metric"],
            limit=values["limit"],
            batch_size=values["batch_size"],
            num_fewshot=values["num_fewshot"],
        )
        heldout = None
        if values["heldout_task"] is not None:
            heldout_limit = values["heldout_limit"] if "heldout_limit" in given else fitness.limit
            heldout = dataclasses.replace(
                fitness, task=values["heldout_task"], limit=heldout_limit
            )
            if (heldout.task, heldout.include_path) == (fitness.task, fitness.include_path):
                raise InvalidInputError(
                    f"The held-out task is the search task {fitness.task!r}: pick a task whose "
                    "documents the search does not score."
                )
        guard_task = None
        if values["guard_task"] is not None:
            guard_task = dataclasses.replace(fitness, task=values["guard_task"])
            if guard_task.task == fitness.task:
                raise InvalidInputError("The guard task is the search task: pick another task.")
        pso = PsoConfig(
            particles=values["particles"],
            iterations=values["iterations"],
            c1=values["c1"],
            c2=values["c2"],
            w=values["w"],
            velocity_limit=values["velocity_limit"],
            seed=values["seed"],
        )
        from optimize.search.strategies import strategy_class

        strategy_class(values["strategy"])  # an unknown name fails here
        kept = {name: values[name] for name in given}
        settings = cls(values, kept, fitness, pso, heldout, guard_task, options)
        if values["layer_min"] is not None and values["layer_max"] is not None:
            settings.space(values["layer_max"] + 1)  # bounds that contradict fail now
        return settings

    def to_values(self) -> dict[str, Any]:
        """The given settings by name, checked (what a journal records:
        `from_values` of it rebuilds these settings)."""
        return dict(self.given)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def objective(self) -> str:
        return str(self.values["objective"])

    @property
    def strategy(self) -> str:
        return str(self.values["strategy"])

    @property
    def workers(self) -> int:
        return int(self.values["workers"])

    @property
    def finalists(self) -> int:
        return int(self.values["finalists"])

    @property
    def significance(self) -> float:
        return float(self.values["significance"])

    @property
    def scores_task(self) -> bool:
        """Whether the run scores an lm-eval task (concept strength scores the
        vector's own held-out prompts instead)."""
        return uses_task(self.objective)

    @property
    def split(self) -> DocumentSplit | None:
        """How the search task's documents are divided: searched, confirming
        and (without a held-out task) held out. None for concept strength."""
        if not self.scores_task:
            return None
        held = 0.0 if self.heldout is not None else float(self.values["holdout_fraction"])
        return DocumentSplit(held, int(self.values["seed"]), float(self.values["confirm_fraction"]))

    def space(self, num_layers: int) -> SearchSpace:
        """The searched space on a model of `num_layers` layers: layers not
        given span `default_layer_range`."""
        low, high = default_layer_range(num_layers)
        given_low, given_high = self.values["layer_min"], self.values["layer_max"]
        return SearchSpace(
            layer_min=low if given_low is None else given_low,
            layer_max=high if given_high is None else given_high,
            alpha_min=self.values["alpha_min"],
            alpha_max=self.values["alpha_max"],
            alpha_decimals=self.values["alpha_decimals"],
            unit=self.values["unit"],
            strength_min=self.values["strength_min"],
            strength_max=self.values["strength_max"],
        )

    def check_vectors(self, count: int) -> None:
        """InvalidInputError unless `count` selected vectors suit this run
        (concept strength searches one vector at a time)."""
        if not self.scores_task and count != 1:
            raise InvalidInputError(
                "Concept strength searches one vector at a time (its own prompts are the "
                f"examples): select one, not {count}."
            )


def _refuse_contradictions(
    given: Mapping[str, Any], values: Mapping[str, Any], naming: str
) -> None:
    """Settings given together that cannot both apply, each named."""

    def names(*keys: str) -> str:
        return "/".join(_named(BY_NAME[k], naming) for k in keys)

    unit = values["unit"]
    other = {"strength": _ALPHA_BOUNDS, "alpha": _STRENGTH_BOUNDS}.get(str(unit), ())
    stray = [k for k in other if k in given and given[k] is not None]
    if stray:
        wanted = _STRENGTH_BOUNDS if unit == "strength" else _ALPHA_BOUNDS
        raise InvalidInputError(
            f"{names(*stray)} bound the {'alpha' if unit == 'strength' else 'strength'}, but "
            f"{names('unit')} is {unit}: give {names(*wanted)} instead, or set "
            f"{names('unit')} to {'alpha' if unit == 'strength' else 'strength'}."
        )
    if given.get("heldout_limit") is not None and not given.get("heldout_task"):
        raise InvalidInputError(
            f"{names('heldout_limit')} needs {names('heldout_task')}: without a held-out task "
            "the held-out documents are a share of the task's own."
        )
