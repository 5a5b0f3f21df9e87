"""The OpenAI-compatible API on the tiny Llama, driven over HTTP as a client
would (the official `openai` client, and raw requests where it cannot send
what is tested): the listings, replies equal to the library's, streaming,
each kind of bad input answered with OpenAI's error object and its HTTP
status while nothing is applied, the API key, the waiting limit, and a
client that leaves mid-stream."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
import torch

from steering import capture_vector, save_vectors
from steering.extract import VectorSource
from steering.limits import MAX_REQUEST_BYTES, MAX_VECTORS_PER_REQUEST
from steering.models import ModelInfo
from steering.persist import DataFolder
from steering.serving import Row, RowRequest, generate_rows
from steering.serving.prompts import chat_tokens
from steering.session import ModelSession
from steering.vector import SteeringVector

HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture
def app(tiny, tiny_steerer, tmp_path, api_server):
    """The API over a session whose data folder holds joy.safetensors and a file
    made for another model; one vector (`kept`, layer 3) is active."""
    joy = capture_vector(tiny_steerer, ["I love it", "so happy"], 1, 12.0, ["I hate it", "so sad"])
    kept = capture_vector(tiny_steerer, ["a storm at sea"], 3, 5.0)
    data = DataFolder(tmp_path)
    data.vectors_dir.mkdir(parents=True)
    save_vectors(data.vectors_dir / "joy.safetensors", [joy], tiny_steerer.info)
    other = SteeringVector(1, 1.0, torch.ones(16), VectorSource.from_prompts(["x"]))
    big = ModelInfo("big", "llama", 8, 16, 99)
    save_vectors(data.vectors_dir / "big.safetensors", [other], big)
    tiny_steerer.set_vectors([kept])
    session = ModelSession(lambda: tiny, data=data)
    server, queue = api_server(session)
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    return {"server": server, "queue": queue, "session": session, "client": client,
            "steerer": tiny_steerer, "joy": joy, "kept": kept}


def _library_reply(steerer, messages, vectors, tokens):
    """What the library gives the same request, for comparison."""
    ids = chat_tokens(steerer.tokenizer, messages)
    return generate_rows(steerer, [Row(RowRequest(ids, tokens), tuple(vectors))])[0].text


def test_models_and_vectors_are_listed(app):
    client, joy, kept = app["client"], app["joy"], app["kept"]
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    assert client.models.retrieve("tiny-llama").owned_by == "steerswarm"
    listing = httpx.get(f"{app['server'].url}/steering/vectors").json()
    assert listing["active"] == [kept.id]
    by_name = {e["name"]: e for e in listing["data"]}
    assert by_name["active#1"]["id"] == kept.id and by_name["active#1"]["layer"] == 3
    assert by_name["joy"]["id"] == joy.id and by_name["joy"]["usable"] is True
    assert by_name["big"]["usable"] is False and "made for big" in by_name["big"]["problem"]


def test_replies_are_the_librarys_with_the_steering_asked_for(app):
    client, steerer, joy, kept = app["client"], app["steerer"], app["joy"], app["kept"]
    for steering, vectors in (
        (None, [kept]),  # the app's active vectors
        (False, []),
        ({"vectors": [{"name": "joy", "strength": 0.5}]}, [joy.with_strength(0.5)]),
        ({"vectors": [{"id": kept.id, "alpha": -5}, {"source": "joy"}]},
         [kept.with_alpha(-5.0), joy]),
    ):
        reply = client.chat.completions.create(
            model="tiny-llama", messages=HELLO, max_tokens=10, extra_body={"steering": steering}
        )
        assert reply.choices[0].message.content == _library_reply(steerer, HELLO, vectors, 10)
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 10
        applied = reply.model_extra["steering"]
        assert [(a["id"], a["alpha"]) for a in applied] == [(v.id, v.alpha) for v in vectors]
        streamed = client.chat.completions.create(
            model="tiny-llama", messages=HELLO, max_tokens=10, stream=True,
            stream_options={"include_usage": True}, extra_body={"steering": steering},
        )
        chunks = list(streamed)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == 10
    completion = client.completions.create(
        model="tiny-llama", prompt="Once upon a time", max_tokens=6,
        extra_body={"steering": {"vectors": [{"name": "joy"}]}},
    )
    ids = tuple(steerer.tokenizer("Once upon a time")["input_ids"])
    expected = generate_rows(steerer, [Row(RowRequest(ids, 6), (joy,))])[0].text
    assert completion.choices[0].text == expected
    assert steerer.vectors == (kept,) and steerer.steered_layers() == [3]


def _post(app, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{app['server'].url}/{path}", content=data,
        headers={"Content-Type": "application/json", **(headers or {})}, timeout=60,
    )


def _chat(max_tokens=4, **fields):
    return {"model": "tiny-llama", "messages": HELLO, "max_tokens": max_tokens, **fields}


def _vectors(*entries):
    return {"steering": {"vectors": list(entries)}}


@pytest.mark.parametrize(
    ("body", "status", "param", "code", "needle"),
    [
        (_chat(**_vectors({"name": "sadness"})), 404, "steering.vectors[0].name",
         "vector_not_found", "no saved vector file called 'sadness'"),
        (_chat(**_vectors({"id": "0123456789ab"})), 404, "steering.vectors[0].id",
         "vector_not_found", "no active or saved vector has the id"),
        (_chat(**_vectors({"name": "joy", "layer": 4})), 400, "steering.vectors[0].layer", None,
         "layers 0 to 3"),
        (json.dumps(_chat(**_vectors({"name": "joy", "strength": 1.5}))).replace("1.5", "1e999")
         .encode(), 400, "steering.vectors[0].strength", None, "finite number"),
        (json.dumps(_chat(**_vectors({"name": "joy", "strength": 1.5}))).replace("1.5", "NaN")
         .encode(), 400, None, None, "NaN is not a JSON number"),
        (_chat(**_vectors({"name": "joy", "strength": -9})), 400,
         "steering.vectors[0].strength", None, "between -8 and 8"),
        (_chat(**_vectors({"name": "joy", "alpha": 1000})), 400, "steering.vectors[0].alpha",
         None, "between -100 and 100"),
        (_chat(**_vectors({"name": "big"})), 400, "steering.vectors[0]", "incompatible_vector",
         "made for big (hidden size 16, 8 layers)"),
        (_chat(**_vectors(*[{"name": "joy"}] * (MAX_VECTORS_PER_REQUEST + 1))), 400,
         "steering.vectors", None, f"at most {MAX_VECTORS_PER_REQUEST}"),
        (_chat(**_vectors({"name": "joy", "layers": [2]})), 400, "steering.vectors[0].layers",
         None, "EasySteer's layer L - 1"),
        (_chat(max_tokens=5000), 400, "max_tokens", None, "from 1 to 2048"),
        (_chat(max_tokens=100), 400, "messages", "context_length_exceeded",
         "context is 128 tokens"),
        ({**_chat(), "messages": [{"role": "user", "content": "word " * 200}]}, 400, "messages",
         "context_length_exceeded", "context is 128 tokens"),
        ({**_chat(), "messages": []}, 400, "messages", None, "non-empty list"),
        ({**_chat(), "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role",
         None, "tool and function messages"),
        (_chat(temperature=9), 400, "temperature", None, "from 0 to 5"),
        (_chat(n=2), 400, "n", "unsupported_parameter", "not supported"),
        (_chat(stop=["a"] * 5), 400, "stop", None, "at most 4"),
        (_chat(model="gpt-4o"), 404, "model", "model_not_found", "serves 'tiny-llama'"),
        (b'{"model": "tiny-llama", "messages": [', 400, None, None, "not valid JSON"),
        (b"[1, 2]", 400, None, None, "must be a JSON object"),
    ],
)
def test_bad_input_gets_an_openai_error_and_changes_nothing(
    app, body, status, param, code, needle
):
    steerer, queue = app["steerer"], app["queue"]
    before = (steerer.vectors, steerer.steered_layers(), queue.status().batches)
    reply = _post(app, "chat/completions", body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert needle in error["message"], error["message"]
    assert (steerer.vectors, steerer.steered_layers(), queue.status().batches) == before


def test_the_openai_client_raises_the_error(app):
    with pytest.raises(openai.NotFoundError) as caught:
        app["client"].chat.completions.create(
            model="tiny-llama", messages=HELLO, max_tokens=4,
            extra_body={"steering": {"vectors": [{"name": "sadness"}]}},
        )
    assert caught.value.body["param"] == "steering.vectors[0].name"


def test_an_oversized_body_is_refused_before_it_is_read_whole(app):
    huge = json.dumps(_chat(padding="x" * MAX_REQUEST_BYTES)).encode()
    reply = _post(app, "chat/completions", huge)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"


def test_the_api_key_is_required_when_set(tiny, tiny_steerer, api_server):
    server, _queue = api_server(ModelSession(lambda: tiny), api_key="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        reply = httpx.get(f"{server.url}/models", headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    client = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="nope", max_retries=0).models.list()


def test_requests_wait_for_the_model_and_too_many_get_429(tiny, tiny_steerer, api_server):
    session = ModelSession(lambda: tiny)
    server, queue = api_server(session, max_waiting=1, busy_note=lambda: "An optimization runs.")
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=120)
    replies = []
    with session.lock:  # a tab or an optimization holds the model
        waiting = threading.Thread(
            target=lambda: replies.append(
                client.chat.completions.create(model="tiny-llama", messages=HELLO, max_tokens=3)
            )
        )
        waiting.start()
        deadline = time.monotonic() + 30
        while queue.status().waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = httpx.get(f"{server.url}/steering/queue").json()
        assert (status["waiting"], status["model_busy"]) == (1, True)
        assert status["note"] == "An optimization runs."
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="tiny-llama", messages=HELLO, max_tokens=3)
        assert caught.value.status_code == 429
        assert "at most 1 may wait" in caught.value.body["message"]
        assert caught.value.response.headers["retry-after"] == "1"
    waiting.join(120)
    assert replies and replies[0].usage.completion_tokens == 3


def test_a_client_that_leaves_mid_stream_leaves_no_vector_behind(app, monkeypatch):
    """The stream is closed after its first piece of text: the request's row
    ends at its next token, and only the app's vector is on the model."""
    steerer, queue = app["steerer"], app["queue"]
    model = steerer.model
    forward = model.forward

    def slow_forward(*args, **kwargs):  # about 3 s for the whole reply
        time.sleep(0.03)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", slow_forward)
    body = _chat(max_tokens=90, stream=True, **_vectors({"name": "joy", "strength": 0.5}))
    body["messages"] = [{"role": "user", "content": "Hi"}]
    with httpx.stream("POST", f"{app['server'].url}/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"role"' not in line:
                assert steerer.steered_layers() == [1]  # the request's vector, not the app's
                break
    assert queue.wait_idle(60)
    status = queue.status()
    assert (status.cancelled, status.served) == (1, 0)  # it stopped before its 90 tokens
    assert steerer.vectors == (app["kept"],) and steerer.steered_layers() == [3]
