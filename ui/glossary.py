"""The words of steering and of a run's verdict, explained where they first
appear on a page, for someone who has never read a steering paper.

Each term has one short explanation (the same sentence as docs/glossary.md,
which a test keeps in step). `note` builds the one-line note a page shows
under text that uses the terms; `terms_in` finds which terms a text uses.
"""

from __future__ import annotations

from collections.abc import Iterable

DOC = "docs/glossary.md"

# term -> (words that show the term is used, its explanation)
TERMS: dict[str, tuple[tuple[str, ...], str]] = {
    "KL": (
        ("KL",),
        (
            "how far a setting moves the model's guesses of the next word on everyday text, "
            "compared with the unsteered model; 0 means not at all, and up to 0.5 kept "
            "SmolLM2's replies fluent"
        ),
    ),
    "nats per token": (
        ("nats per token", "nats/token"),
        (
            "the unit of KL and of concept strength: a change in log-probability per word piece "
            "(1 nat is a factor of e ≈ 2.7)"
        ),
    ),
    "strength": (
        ("strength",),
        (
            "how hard a vector pushes, as a share of a typical hidden state at its layer "
            "(0.1 is gentle, 0.4 is strong), so one range fits every layer"
        ),
    ),
    "alpha": (
        ("alpha",),
        (
            "the number the vector is multiplied by before it is added (H + alpha × V); the "
            "same alpha is a different push at different layers"
        ),
    ),
    "layer": (
        ("layer",),
        (
            "where in the model the vector is added: layer L is the hidden state entering the "
            "model's L-th block, counted from 0"
        ),
    ),
    "d′": (
        ("d′",),
        (
            "how cleanly a layer separates the concept prompts from the contrast prompts along "
            "the vector's direction: the gap between their means in units of their spread"
        ),
    ),
    "Pareto front": (
        ("front",),
        (
            "the settings no other setting beats on both the score and the KL: each is the best "
            "score for its amount of side effect"
        ),
    ),
    "objective": (
        ("objective", "guarded"),
        (
            "what the search ranks settings by: guarded takes the best score among the settings "
            "whose KL is within the budget; target takes the best score whatever the KL"
        ),
    ),
    "confirmation documents": (
        ("confirmation",),
        (
            "documents of the task that did not rank the settings; the best few are scored again "
            "there, so a lucky score on the search documents does not win"
        ),
    ),
    "held-out documents": (
        ("held-out",),
        (
            "documents the search never sees, scored once at the end to check the pick"
        ),
    ),
    "p": (
        ("p = ", "p < "),
        (
            "the chance of a result at least this good if the setting did not help at all; "
            "small (below 0.05) means the gain is unlikely to be luck"
        ),
    ),
}


def explain(term: str) -> str:
    """The explanation of `term` (a key of TERMS)."""
    return TERMS[term][1]


def terms_in(text: str, terms: Iterable[str] | None = None) -> list[str]:
    """The terms (of `terms`, default all) whose words appear in `text`, in TERMS order."""
    wanted = TERMS if terms is None else {t: TERMS[t] for t in terms}
    return [term for term, (words, _why) in wanted.items() if any(w in text for w in words)]


def note(terms: Iterable[str]) -> str:
    """A one-line Markdown note explaining `terms`, pointing to the docs page;
    "" for no terms."""
    chosen = list(terms)
    if not chosen:
        return ""
    parts = " · ".join(f"**{term}**: {explain(term)}" for term in chosen)
    return f"ℹ {parts}. More in `{DOC}`."
