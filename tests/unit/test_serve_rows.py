"""Per-request steering without HTTP, on the tiny Llama: batched rows each
get what their own steering gives alone (the oracle: `model.generate` under
`Steerer.applied`, the path the Chat tab uses), rows end on their own, the
app's active vectors are back however a batch ends, the catalog turns names
and ids into vectors, and the queue batches greedy requests, runs sampled
ones alone, refuses too many and drops cancelled ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from steering import capture_vector, recapture, save_vectors
from steering.errors import RequestFieldError, ServerBusyError, UnknownVectorError
from steering.extract import VectorSource
from steering.models import ModelInfo
from steering.persist import DataFolder
from steering.serving import (
    GenerationQueue,
    Job,
    Row,
    RowRequest,
    Sampling,
    VectorCatalog,
    generate_rows,
    parse_steering,
)
from steering.serving.queue import BUSY_NOTE, DONE
from steering.serving.rows import CANCELLED, LENGTH, STOP, RowOutput
from steering.session import ModelSession
from steering.vector import SteeringVector

PROMPTS = (
    "Hello there friend",
    "A much longer prompt, with more words in it than the others",
    "Hi",
)


def _ids(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text)["input_ids"])


def _decode(tokenizer, tokens) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _alone(steerer, ids, vectors, tokens: int) -> str:
    """The oracle: plain greedy `generate` under `Steerer.applied`."""
    input_ids = torch.tensor([ids])
    with steerer.applied(vectors), torch.no_grad():
        out = steerer.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
            min_new_tokens=tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
            pad_token_id=steerer.tokenizer.eos_token_id,
        )
    return _decode(steerer.tokenizer, out[0, len(ids) :].tolist())


@pytest.fixture
def vectors(tiny_steerer):
    """Two vectors the tests steer with, and one the app keeps active."""
    joy = capture_vector(tiny_steerer, ["I love it", "so happy"], 1, 12.0, ["I hate it", "so sad"])
    calm = capture_vector(tiny_steerer, ["calm and quiet"], 2, 6.0)
    kept = capture_vector(tiny_steerer, ["a storm at sea"], 3, 5.0)
    tiny_steerer.set_vectors([kept])
    return joy, calm, kept


class Collect(RowOutput):
    """Keeps the streamed pieces; cancels after `cancel_after` of them."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.pieces: list[str] = []
        self.cancel_after = cancel_after

    def on_text(self, delta: str) -> None:
        self.pieces.append(delta)

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.pieces) >= self.cancel_after


def test_each_row_gets_what_its_own_steering_gives_alone(tiny_steerer, vectors):
    joy, calm, kept = vectors
    tok = tiny_steerer.tokenizer
    settings = [(joy,), (joy.with_alpha(-12.0), calm), ()]
    rows = [Row(RowRequest(_ids(tok, p), 12), s) for p, s in zip(PROMPTS, settings, strict=True)]
    results = generate_rows(tiny_steerer, rows)
    for prompt, setting, result in zip(PROMPTS, settings, results, strict=True):
        assert result.text == _alone(tiny_steerer, _ids(tok, prompt), setting, 12)
        assert (result.finish_reason, result.completion_tokens) == (LENGTH, 12)
    # the steering reached each row: the same prompt unsteered reads otherwise
    assert results[0].text != _alone(tiny_steerer, _ids(tok, PROMPTS[0]), (), 12)
    assert results[1].text != _alone(tiny_steerer, _ids(tok, PROMPTS[1]), (), 12)
    # and the app's active vector is back, alone on the model
    assert tiny_steerer.vectors == (kept,) and tiny_steerer.steered_layers() == [3]


def test_rows_end_on_their_own_and_stream_their_text(tiny_steerer, vectors):
    joy, _calm, _kept = vectors
    tok = tiny_steerer.tokenizer
    full = generate_rows(tiny_steerer, [Row(RowRequest(_ids(tok, PROMPTS[0]), 16), (joy,))])[0]
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    outputs = [Collect(), Collect(), Collect()]
    rows = [
        Row(RowRequest(_ids(tok, PROMPTS[0]), 16, stop=(stop,)), (joy,), outputs[0]),
        Row(RowRequest(_ids(tok, PROMPTS[1]), 5), (), outputs[1]),
        Row(RowRequest(_ids(tok, PROMPTS[2]), 9), (joy,), outputs[2]),
    ]
    results = generate_rows(tiny_steerer, rows)
    assert results[0].finish_reason == STOP
    assert results[0].text == full.text[: full.text.index(stop)]
    assert [r.completion_tokens for r in results[1:]] == [5, 9]
    for output, result in zip(outputs, results, strict=True):
        assert "".join(output.pieces) == result.text  # the stream adds up to the reply


def test_a_cancelled_row_ends_at_its_next_token_and_the_others_go_on(tiny_steerer, vectors):
    joy, calm, kept = vectors
    tok = tiny_steerer.tokenizer
    leaving = Collect(cancel_after=2)
    rows = [
        Row(RowRequest(_ids(tok, PROMPTS[0]), 40), (joy,), leaving),
        Row(RowRequest(_ids(tok, PROMPTS[1]), 10), (calm,)),
    ]
    left, stayed = generate_rows(tiny_steerer, rows)
    assert left.finish_reason == CANCELLED and left.completion_tokens == 2
    assert stayed.text == _alone(tiny_steerer, _ids(tok, PROMPTS[1]), (calm,), 10)
    assert tiny_steerer.vectors == (kept,) and tiny_steerer.steered_layers() == [3]


def test_a_failing_generation_leaves_only_the_active_vectors(tiny_steerer, vectors, monkeypatch):
    joy, calm, kept = vectors
    model = tiny_steerer.model
    seen = []

    def failing(*args, **kwargs):
        seen.append(tiny_steerer.steered_layers())
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "generate", failing)
    tok = tiny_steerer.tokenizer
    with pytest.raises(RuntimeError, match="out of memory"):
        generate_rows(tiny_steerer, [Row(RowRequest(_ids(tok, "Hi"), 4), (joy, calm))])
    assert seen == [[1, 2]]  # the request's vectors were on, the app's were off
    assert tiny_steerer.vectors == (kept,) and tiny_steerer.steered_layers() == [3]


def test_sampled_rows_run_alone_and_their_seed_repeats_them(tiny_steerer, vectors):
    joy, _calm, _kept = vectors
    tok = tiny_steerer.tokenizer
    sampled = RowRequest(_ids(tok, "Hi"), 8, Sampling(temperature=1.0, seed=3))
    with pytest.raises(ValueError, match="one at a time"):
        generate_rows(tiny_steerer, [Row(sampled, ()), Row(RowRequest(_ids(tok, "Yo"), 4), ())])
    first = generate_rows(tiny_steerer, [Row(sampled, (joy,))])[0]
    assert generate_rows(tiny_steerer, [Row(sampled, (joy,))])[0] == first


# ------------------------------------------------------------------ the catalog


def _other_model_file(path) -> None:
    other = ModelInfo("bigger-model", "llama", 6, 16, 128)
    vector = SteeringVector(2, 1.0, torch.ones(16), VectorSource.from_prompts(["x"]))
    save_vectors(path, [vector], other)


@pytest.fixture
def folder(tiny_steerer, vectors, tmp_path):
    """A data folder with joy.safetensors (one vector), pair.safetensors (two),
    raw.safetensors (no layer norm: no strength), one made for another model
    and one that is not a vector file."""
    joy, calm, _kept = vectors
    data = DataFolder(tmp_path)
    data.vectors_dir.mkdir(parents=True)
    save_vectors(data.vectors_dir / "joy.safetensors", [joy], tiny_steerer.info)
    pair = [calm, joy.with_alpha(3.0)]
    save_vectors(data.vectors_dir / "pair.safetensors", pair, tiny_steerer.info)
    raw = SteeringVector(2, 1.0, torch.ones(32), VectorSource.from_prompts(["x"]))
    save_vectors(data.vectors_dir / "raw.safetensors", [raw], tiny_steerer.info)
    _other_model_file(data.vectors_dir / "big.safetensors")
    (data.vectors_dir / "broken.safetensors").write_bytes(b"not a vector file")
    return data


def _choose(catalog, steerer, *entries):
    choice = parse_steering({"vectors": list(entries)})
    catalog.check(steerer, choice)
    return catalog.resolve(steerer, choice)


def test_the_catalog_lists_active_and_saved_vectors(tiny_steerer, vectors, folder):
    joy, calm, kept = vectors
    listed = {e.name: e for e in VectorCatalog(folder).entries(tiny_steerer)}
    assert set(listed) == {"active#1", "joy", "pair#1", "pair#2", "raw", "big", "broken"}
    assert (listed["active#1"].id, listed["active#1"].layer) == (kept.id, 3)
    assert (listed["joy"].id, listed["joy"].strength) == (joy.id, pytest.approx(joy.strength))
    assert (listed["pair#1"].id, listed["pair#2"].alpha) == (calm.id, 3.0)
    assert not listed["big"].usable and "bigger-model" in listed["big"].problem
    assert not listed["broken"].usable and listed["broken"].problem


def test_names_and_ids_become_vectors(tiny_steerer, vectors, folder):
    joy, calm, kept = vectors
    catalog = VectorCatalog(folder)

    def same(got, *want):
        return [v.id for v in got] == [w.id for w in want] and all(
            g.same_as(w) for g, w in zip(got, want, strict=True)
        )

    assert same(_choose(catalog, tiny_steerer, {"name": "joy"}), joy)
    assert same(_choose(catalog, tiny_steerer, {"name": "pair"}), calm, joy.with_alpha(3.0))
    assert same(_choose(catalog, tiny_steerer, {"name": "pair.safetensors#2"}), joy.with_alpha(3.0))
    assert same(_choose(catalog, tiny_steerer, {"source": "pair#1"}), calm)
    assert same(_choose(catalog, tiny_steerer, {"name": "active"}), kept)
    assert same(_choose(catalog, tiny_steerer, {"id": calm.id}), calm)
    assert same(_choose(catalog, tiny_steerer, {"id": kept.id, "alpha": -1}), kept.with_alpha(-1.0))
    strong = _choose(catalog, tiny_steerer, {"name": "joy", "strength": 0.5})[0]
    assert strong.alpha == pytest.approx(joy.alpha_for(0.5))
    assert strong.strength == pytest.approx(0.5)
    moved = _choose(catalog, tiny_steerer, {"name": "joy", "layer": 3, "alpha": 2})[0]
    assert moved.same_as(recapture(tiny_steerer, joy, 3).with_alpha(2.0))
    assert catalog.resolve(tiny_steerer, parse_steering(None)) == (kept,)
    assert catalog.resolve(tiny_steerer, parse_steering(False)) == ()


@pytest.mark.parametrize(
    ("entry", "error", "param", "needle"),
    [
        ({"name": "sadness"}, UnknownVectorError, "steering.vectors[0].name",
         "no saved vector file called 'sadness' (saved: "),
        ({"name": "../vectors/joy"}, UnknownVectorError, "steering.vectors[0].name", "no saved"),
        ({"name": "pair#3"}, UnknownVectorError, "steering.vectors[0].name", "#3 does not exist"),
        ({"name": "pair#x"}, UnknownVectorError, "steering.vectors[0].name", "not a vector name"),
        ({"id": "000000000000"}, UnknownVectorError, "steering.vectors[0].id",
         "no active or saved"),
        ({"name": "big"}, RequestFieldError, "steering.vectors[0]", "made for bigger-model"),
        ({"name": "broken"}, RequestFieldError, "steering.vectors[0]", "not a readable"),
        ({"name": "joy", "layer": 4}, RequestFieldError, "steering.vectors[0].layer",
         "layers 0 to 3"),
        ({"name": "raw", "strength": 0.5}, RequestFieldError, "steering.vectors[0].strength",
         "no layer norm to convert a strength with"),
    ],
)
def test_bad_choices_are_refused_by_check_and_resolve(
    tiny_steerer, vectors, folder, entry, error, param, needle
):
    catalog = VectorCatalog(folder)
    choice = parse_steering({"vectors": [entry]})
    for step in (catalog.check, catalog.resolve):
        with pytest.raises(error) as caught:
            step(tiny_steerer, choice)
        assert caught.value.param == param and needle in str(caught.value), str(caught.value)
    if entry.get("name") == "big":
        assert caught.value.code == "incompatible_vector"


def test_a_name_standing_for_many_vectors_counts_them_all(tiny_steerer, vectors, folder):
    joy, _calm, _kept = vectors
    nine = [
        dataclasses.replace(joy, alpha=float(i), direction=joy.direction.clone(), id=f"v{i}")
        for i in range(1, 10)
    ]
    save_vectors(folder.vectors_dir / "nine.safetensors", nine, tiny_steerer.info)
    choice = parse_steering({"vectors": [{"name": "nine"}, {"name": "nine"}]})
    with pytest.raises(RequestFieldError, match="choose 18 vectors in all"):
        VectorCatalog(folder).check(tiny_steerer, choice)


# -------------------------------------------------------------------- the queue


@pytest.fixture
def session(tiny, vectors, folder):
    return ModelSession(lambda: tiny, data=folder)


def _job(tokenizer, prompt, steering, tokens=8, sampling=None):
    row = RowRequest(_ids(tokenizer, prompt), tokens, sampling or Sampling())
    return Job(row, parse_steering(steering))


def _held(session, queue, jobs):
    """Submit `jobs` while the model is busy, so they wait together."""
    with session.lock:
        tickets = [queue.submit(job) for job in jobs]
        status = queue.status()
    return tickets, status


def test_waiting_greedy_requests_share_one_batch_and_a_sampled_one_runs_alone(
    session, tiny_steerer, vectors
):
    joy, calm, kept = vectors
    tok = tiny_steerer.tokenizer
    queue = GenerationQueue(session, VectorCatalog(session.data), busy_note=lambda: "optimizing")
    try:
        steerings = [{"vectors": [{"name": "joy"}]}, {"vectors": [{"id": calm.id, "alpha": -6}]},
                     False, None]
        jobs = [_job(tok, p, s) for p, s in zip((*PROMPTS, "Yo"), steerings, strict=True)]
        jobs.insert(1, _job(tok, "Go", False, sampling=Sampling(temperature=0.8, seed=1)))
        tickets, status = _held(session, queue, jobs)
        assert (status.waiting, status.note) == (5, "optimizing")
        assert queue.wait_idle(60)
        assert queue.status().batches == 2 and queue.status().served == 5
        expected = [(joy,), (calm.with_alpha(-6.0),), (), (kept,)]
        greedy = [t for i, t in enumerate(tickets) if i != 1]
        for ticket, prompt, setting in zip(greedy, (*PROMPTS, "Yo"), expected, strict=True):
            assert ticket.wait().text == _alone(tiny_steerer, _ids(tok, prompt), setting, 8)
        assert tiny_steerer.vectors == (kept,) and tiny_steerer.steered_layers() == [3]
    finally:
        queue.close()


def test_too_many_waiting_requests_are_refused_and_a_cancelled_one_never_runs(
    session, tiny_steerer, vectors
):
    tok = tiny_steerer.tokenizer
    heard = []
    queue = GenerationQueue(session, VectorCatalog(session.data), max_waiting=2)
    try:
        with session.lock:
            first = queue.submit(_job(tok, "Hi", None))
            second = queue.submit(_job(tok, "Yo", None), lambda kind, _payload: heard.append(kind))
            with pytest.raises(ServerBusyError, match=r"at most 2 may wait"):
                queue.submit(_job(tok, "No", None))
            assert second.position() == 2
            second.cancel()
            assert queue.status().waiting == 1
        assert first.wait(60).completion_tokens == 8
        assert second.wait(1).finish_reason == CANCELLED and heard == [DONE]
        assert queue.wait_idle(60)
        assert (queue.status().served, queue.status().cancelled) == (1, 1)
    finally:
        queue.close()


def test_a_request_whose_vector_went_away_fails_alone(session, tiny_steerer, vectors, folder):
    tok = tiny_steerer.tokenizer
    queue = GenerationQueue(session, VectorCatalog(session.data))
    try:
        with session.lock:
            doomed = queue.submit(_job(tok, "Hi", {"vectors": [{"name": "joy"}]}))
            fine = queue.submit(_job(tok, "Yo", {"vectors": [{"name": "pair#1"}]}))
            (folder.vectors_dir / "joy.safetensors").unlink()
        with pytest.raises(UnknownVectorError, match="no saved vector file called 'joy'"):
            doomed.wait(60)
        assert fine.wait(60).completion_tokens == 8
    finally:
        queue.close()


def test_the_status_says_when_the_model_is_busy(session, tiny_steerer):
    queue = GenerationQueue(session, VectorCatalog(session.data))
    try:
        assert not queue.status().model_busy
        with session.lock:
            queue.submit(_job(tiny_steerer.tokenizer, "Hi", None))
            status = queue.status()
        assert status.model_busy and status.note == BUSY_NOTE and status.waiting == 1
        assert queue.wait_idle(60)
    finally:
        queue.close()
