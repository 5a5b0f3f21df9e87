"""The one table of an optimization run's settings.

Each setting is declared once here: its name, kind, default, bounds, label and
help. From this table come the flags of `python -m optimize`
(`add_arguments`), the Optimize tab's form (ui/optimize_form.py), the keys
the webui saves (`optimize_<name>`, ui/settings.py and extension.py's
`params`), the defaults of FitnessConfig / PsoConfig / SearchSpace, and the
check of a preset's "optimize" block (`check_preset`). Adding a setting is
one row here plus where the run uses it.

Standard library only: `python -m optimize --help` builds its parser from
this table before torch is imported.

The default alpha range is -4 to 4 (it was 4 on the command line and 8 in
the UI). Raw alpha multiplies a difference-of-means vector; on SmolLM2-135M
the measured text stays fluent and turns cheerful at +2 to +4 and degrades
above about +8 (README's table), and a webui chat looped at alpha 4 (issue
9). So +-4 keeps the swarm where text still reads, and a range of 8 wide is
searched in 800 steps of 0.01. Wider ranges remain one flag or field away.

The default unit is "strength": the coefficient as a share of the
mean norm of the hidden states entering the layer over the neutral set, so
one range fits every layer, vector and model. Its default, -0.2 to 0.2, keeps
a small swarm where a task can gain: on SmolLM2 the demo's vector gains at
strength 0.05-0.15 over layers 4-14 and every layer's answers collapse from
about 0.2-0.3 (docs/performance.md, the default run), before the guard's KL
budget (0.5 nats/token) is crossed at 0.3-0.4 (docs/explore.md).
A preset's block keeps its measured alpha bounds with "unit": "alpha".
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Where a setting appears. "cli": a flag; "form": a field of the Optimize tab
# (saved by the webui); "preset": a key every preset's "optimize" block gives.
CLI, FORM, PRESET = "cli", "form", "preset"
EVERYWHERE = frozenset({CLI, FORM, PRESET})

# The groups a setting belongs to (the table is in the form's order).
GROUPS = ("task", "swarm", "search space", "held-out", "guard", "workers")


@dataclass(frozen=True)
class Field:
    """One run setting.

    Attributes:
        name: the Python name (a FitnessConfig/PsoConfig/SearchSpace attribute
            or a run option); the CLI flag is `--name-with-dashes` unless
            `flag` says otherwise; the webui saves it as `optimize_<name>`.
        kind: int, float or str.
        default: the value when none is given. None means "none" for text
            and "derived from the model or the other settings" for numbers
            (the help says how).
        label: the form's label; also names the value in the form's errors.
        noun: names the value in the run's own errors ("The limit").
        help: one line for the CLI help and the form's info text.
        group: one of GROUPS.
        minimum, maximum: inclusive bounds (None: unbounded).
        where: which of CLI, FORM, PRESET show it.
        flag: the CLI flag, when it is not `--name-with-dashes`.
        required_on_cli: the CLI has no default for it (the run says when it is
            needed: the task is not, for the concept objective).
        metavar: the CLI's placeholder, when not N (int), X (float), NAME (text).
        choices: the only values a text setting takes (None: any text).
        form_default: the form's starting value when it differs from
            `default` (None: the same), see `form_start`.
    """

    name: str
    kind: type
    default: Any
    label: str
    noun: str
    help: str
    group: str
    minimum: float | None = None
    maximum: float | None = None
    # a cap on work asked for, checked after the bounds: "at most N"
    cap: float | None = None
    where: frozenset[str] = EVERYWHERE
    flag: str | None = None
    required_on_cli: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    form_default: Any = None

    def __post_init__(self) -> None:
        if self.kind not in (int, float, str) or self.group not in GROUPS:
            raise ValueError(f"bad settings row {self.name!r}")

    def capped(self, value: Any) -> Any:
        """`value`, refused when over this setting's cap."""
        if self.cap is not None and value > self.cap:
            from steering.errors import InvalidInputError

            raise InvalidInputError(f"{self.noun} must be at most {self.cap:,}, got {value:,}.")
        return value

    @property
    def form_start(self) -> Any:
        """The value the Optimize form starts with (and the webui saves as
        unset): `form_default`, else `default`."""
        return self.default if self.form_default is None else self.form_default

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def saved_key(self) -> str:
        """The key the webui saves the form value under."""
        return "optimize_" + self.name

    def check(self, value: Any) -> Any:
        """`value` as this setting's kind within its bounds, else InvalidInputError
        (named by `noun`). Text is stripped; None stays None only for text."""
        from steering import validate

        if self.kind in (int, float):
            checked: float
            if self.kind is int:
                checked = validate.whole(self.noun, value, self.minimum, self.maximum)
            else:
                checked = validate.number(self.noun, value, self.minimum, self.maximum)
            return self.capped(checked)
        if value is None:
            return None
        if not isinstance(value, str):
            from steering.errors import InvalidInputError

            raise InvalidInputError(f"{self.noun} must be text, got {validate.typed(value)}.")
        value = value.strip()
        if self.choices is not None and value not in self.choices:
            from steering.errors import InvalidInputError

            raise InvalidInputError(
                f"{self.noun} must be one of {', '.join(self.choices)}, "
                f"got {validate.typed(value)}."
            )
        return value


FIELDS: tuple[Field, ...] = (
    # -- task ----------------------------------------------------------------
    Field("task", str, "steer_sentiment", "Task", "The task",
          "lm-eval task or group name (not used by the concept objective)", "task",
          required_on_cli=True),
    Field("task_folder", str, None, "Task folder", "The task folder",
          "folder of local task YAMLs; none: lm-eval's registered tasks (the form "
          "offers only the folders the operator allowed)",
          "task", where=frozenset({CLI, FORM}), flag="--include-path", metavar="DIR"),
    Field("metric", str, "acc", "Metric", "The metric", "metric to maximise", "task"),
    Field("limit", int, 400, "Limit", "The document limit",
          "documents of the task used at most (all of them when it has fewer), split into "
          "search, confirmation and held-out documents (on the command line 0 means all)",
          "task", minimum=1, cap=100_000),
    Field("batch_size", int, 8, "Batch size", "The batch size",
          "lm-eval batch size; scores do not depend on it", "task", minimum=1,
          cap=1024),
    Field("num_fewshot", int, 0, "Few-shot examples", "The number of few-shot examples",
          "few-shot examples per prompt", "task", minimum=0, where=frozenset({CLI})),
    # -- swarm -----------------------------------------------------------------
    Field("particles", int, 6, "Particles", "The number of particles",
          "particles in the swarm", "swarm", minimum=1, cap=1000),
    Field("iterations", int, 4, "Iterations", "The number of iterations",
          "swarm iterations (with a time budget: as many as fit)", "swarm", minimum=1,
          cap=10_000),
    # The form starts at 5 minutes: the default run takes about 1 minute on the
    # demo and on steer_sentiment on a 2-core CPU (docs/app.md), so a newcomer's
    # first run searches about five times as many settings and still ends soon.
    Field("budget", float, 0.0, "Time budget (minutes)", "The time budget",
          "the minutes the run may take (0: no limit): the settings that fit are planned "
          "from what the first evaluation cost, leaving time for the checks", "swarm",
          minimum=0.0,
          cap=7 * 24 * 60, where=frozenset({CLI, FORM}), form_default=5.0),
    # -- search space ----------------------------------------------------------
    Field("layer_min", int, None, "Lowest layer", "The lowest layer",
          "lowest layer searched, from 0 (default: about a tenth of the model's layers)",
          "search space", minimum=0),
    Field("layer_max", int, None, "Highest layer", "The highest layer",
          "highest layer searched (default: about 60% of the model's layers)",
          "search space", minimum=0),
    Field("unit", str, "strength", "Unit", "The unit",
          "strength: search the strength bounds (the added vector's norm as a share of "
          "the layer's mean hidden-state norm; one range fits every layer and model); "
          "alpha: search the raw alpha bounds", "search space", choices=("strength", "alpha")),
    # Why +-0.2 (docs/performance.md, the default run): on SmolLM2 the demo's
    # vector gains 15-29 points at strength 0.05-0.15 over layers 4-14, and at
    # 0.2-0.3 and past it every layer falls to the answer-one-class floor; a
    # wider range spends most of a small swarm where nothing can be found.
    Field("strength_min", float, -0.2, "Lowest strength", "The lowest strength",
          "lowest strength searched (unit strength)", "search space",
          minimum=-8.0, maximum=8.0, where=frozenset({CLI, FORM})),
    Field("strength_max", float, 0.2, "Highest strength", "The highest strength",
          "highest strength searched (unit strength; past about 0.2 SmolLM2's answers break)",
          "search space", minimum=-8.0, maximum=8.0, where=frozenset({CLI, FORM})),
    Field("alpha_min", float, -4.0, "Lowest alpha", "The lowest alpha",
          "lowest alpha searched (unit alpha)", "search space"),
    Field("alpha_max", float, 4.0, "Highest alpha", "The highest alpha",
          "highest alpha searched (unit alpha)", "search space"),
    Field("alpha_decimals", int, 2, "Alpha decimals", "The number of alpha decimals",
          "alphas are rounded to this many decimals", "search space",
          minimum=0, maximum=6, where=frozenset({CLI})),
    Field("c1", float, 0.5, "c1 (cognitive)", "c1",
          "cognitive coefficient: pull towards a particle's own best", "swarm", minimum=0,
          cap=10),
    Field("c2", float, 0.3, "c2 (social)", "c2",
          "social coefficient: pull towards the swarm's best", "swarm", minimum=0,
          cap=10),
    Field("w", float, 0.9, "w (inertia)", "w", "inertia weight", "swarm", minimum=0,
          cap=10),
    # pyswarms' own start draws every velocity from [0, 1) whatever the range:
    # in strength's 0.4-wide range that sent every particle to the top bound
    # after one iteration, where the demo's answers collapse, and kept it there
    # (docs/performance.md, "The swarm's velocities").
    Field("velocity_limit", float, 0.25, "Velocity limit", "The velocity limit",
          "a particle's velocity is drawn from, and kept within, plus or minus this share "
          "of each range (0: pyswarms' own start, from 0 to 1 in every dimension)", "swarm",
          minimum=0, maximum=1),
    Field("seed", int, 0, "Seed", "The seed",
          "random seed: the same seed gives the same search", "swarm", minimum=0),
    # -- held-out --------------------------------------------------------------
    Field("heldout_task", str, None, "Held-out task", "The held-out task",
          "optional: a task of other documents (same folder and metric); the baseline "
          "and the best setting are scored on it after the search", "held-out"),
    Field("heldout_limit", int, None, "Held-out limit", "The held-out limit",
          "held-out documents scored (default: the same as the limit; on the command "
          "line 0 means all)", "held-out", minimum=1, cap=100_000),
    Field("holdout_fraction", float, 0.3, "Held-out share", "The held-out fraction",
          "share of the task's documents set aside with the seed and scored once, after "
          "the search, to check the pick with a paired test; 0: none (with a held-out task, "
          "its documents are the held-out ones); with the concept objective, the share of "
          "the vector's prompts held out to score (the vector is rebuilt from the rest)",
          "held-out", minimum=0.0, maximum=0.9,
          where=frozenset({CLI, FORM})),
    Field("confirm_fraction", float, 0.8, "Confirmation share", "The confirmation fraction",
          "share of the documents not held out that confirm the best few settings: "
          "documents that did not rank them, so a lucky score on the search documents "
          "does not win; the rest rank every setting", "held-out",
          minimum=0.1, maximum=0.9, where=frozenset({CLI, FORM})),
    Field("finalists", int, 3, "Finalists", "The number of finalists",
          "how many of the best distinct settings are scored on the confirmation documents",
          "held-out", minimum=1, cap=10, where=frozenset({CLI, FORM})),
    Field("significance", float, 0.05, "Significance", "The significance level",
          "a setting is recommended only if its gain on the confirmation documents passes "
          "a one-sided paired sign test at this level (Holm's step-down over the finalists)",
          "held-out",
          minimum=1e-6, maximum=0.5, where=frozenset({CLI, FORM})),
    # -- search strategy (optimize/strategies) ---------------------------------
    Field("strategy", str, "pso", "Strategy", "The search strategy",
          "pso: the particle swarm; tpe or cmaes: Optuna's samplers, the same number of "
          "evaluations (needs optuna)", "swarm", where=frozenset({CLI, FORM})),
    # -- guard (optimize/guard/kl.py, docs/guard.md) -------------------------------
    Field("objective", str, "guarded", "Objective", "The objective",
          "guarded: the best target score within the KL budget (and the guard task's "
          "drop); target: the target score alone; concept: no task, the largest gain in "
          "log-likelihood of the vector's held-out concept prompts over its contrast "
          "prompts within the KL budget (the strongest setting that keeps text fluent)",
          "guard", where=frozenset({CLI, FORM}), choices=("guarded", "target", "concept")),
    Field("kl_budget", float, 0.5, "KL budget", "The KL budget",
          "largest mean KL (nats per token) from the unsteered model on the neutral "
          "text set that the guarded objective accepts; 0.5 kept SmolLM2 fluent",
          "guard", minimum=1e-6, where=frozenset({CLI, FORM})),
    Field("guard_task", str, None, "Guard task", "The guard task",
          "optional: an lm-eval task (same folder) scored for every setting; the "
          "guarded objective accepts a drop of at most the max guard drop", "guard",
          where=frozenset({CLI, FORM})),
    Field("max_guard_drop", float, 5.0, "Max guard drop", "The maximum guard drop",
          "points the guard task may lose against the unsteered model", "guard",
          minimum=1e-6, where=frozenset({CLI, FORM})),
    # -- workers (optimize/workers/ray.py, docs/scale-out.md) ------------------------
    Field("workers", int, 0, "Ray workers", "The number of Ray workers",
          "score each iteration's settings on this many Ray workers, each with its own "
          "copy of the model (a local Ray unless --ray names a cluster); 0: in this process",
          "workers", minimum=0, cap=256, where=frozenset({CLI, FORM})),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def fields(where: str) -> tuple[Field, ...]:
    """The settings shown in `where` (CLI, FORM or PRESET), in table order."""
    return tuple(f for f in FIELDS if where in f.where)


def default(name: str) -> Any:
    """The table's default of a setting (for the config dataclasses)."""
    return BY_NAME[name].default


def _default_text(f: Field) -> str:
    if f.required_on_cli or f.default is None:
        return ""
    return f" (default: {f.default:g})" if f.kind is float else f" (default: {f.default})"


# The placeholder a flag's help shows for its value, by the setting's type.
_METAVARS: dict[type, str] = {int: "N", float: "X", str: "NAME"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every CLI setting, with its type and help (its default
    is said in the help): a flag not given is absent from the parsed
    namespace, so the run knows what was given (optimize/run/settings.py)."""
    for f in fields(CLI):
        parser.add_argument(
            f.cli_flag,
            dest=f.name,
            type=f.kind,
            default=argparse.SUPPRESS,
            metavar=f.metavar or (None if f.choices else _METAVARS[f.kind]),
            choices=f.choices,
            help=(f.help + _default_text(f)).replace("%", "%%"),
        )


def check_preset(values: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's "optimize" block, checked against the table.

    Raises:
        InvalidInputError: a setting is missing, unknown, or out of bounds.
    """
    from steering.errors import InvalidInputError

    wanted = fields(PRESET)
    missing = [f.name for f in wanted if f.name not in values]
    unknown = sorted(set(values) - {f.name for f in wanted})
    if missing or unknown:
        raise InvalidInputError(
            "The preset's optimize settings "
            + (f"lack {', '.join(missing)}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"have unknown {', '.join(unknown)}" if unknown else "")
            + "."
        )
    return {f.name: f.check(values[f.name]) for f in wanted}
