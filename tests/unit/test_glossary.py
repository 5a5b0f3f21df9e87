"""The glossary page says what the app says: every term the app explains in
place (ui/glossary.py) has the same sentence in docs/glossary.md."""

from __future__ import annotations

from pathlib import Path

from ui import glossary

ROOT = Path(__file__).resolve().parents[2]


def test_every_term_the_app_explains_is_on_the_glossary_page_in_the_same_words():
    page = (ROOT / glossary.DOC).read_text(encoding="utf-8")
    for term, (_words, why) in glossary.TERMS.items():
        assert f"- **{term}**: {why}." in page, term


def test_a_note_names_its_terms_and_points_to_the_page():
    note = glossary.note(("KL", "p"))
    assert note.startswith("ℹ **KL**: how far a setting moves") and "**p**: the chance" in note
    assert note.endswith(f"More in `{glossary.DOC}`.")
    assert glossary.note(()) == ""
    assert glossary.terms_in("p = 0.03 on 49 confirmation documents") == [
        "confirmation documents", "p",
    ]
