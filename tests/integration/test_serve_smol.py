"""The API on the embedded SmolLM2 with the official `openai` client: requests
sent together with different steering share one batched generation, and
each gets exactly the greedy reply it gets alone; the app's active vector
is on the model before and after, and never on a request that did not ask
for it."""

from __future__ import annotations

import threading
import time

import openai
import pytest
import torch

from steering import capture_vector, recapture, save_vectors
from steering.generate import chat_input_ids
from steering.persist import DataFolder
from steering.session import ModelSession

pytestmark = pytest.mark.full

TOKENS = 24
JOY = ["I love this, what a joy", "so happy and delighted", "a wonderful, cheerful day"]
GRIEF = ["I hate this, what a misery", "so sad and grieving", "a terrible, gloomy day"]


def _alone(steerer, messages, vectors):
    """The oracle: plain greedy `generate` under `Steerer.applied`."""
    ids = chat_input_ids(steerer.tokenizer, messages)
    with steerer.applied(vectors), torch.no_grad():
        out = steerer.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=TOKENS,
            do_sample=False, temperature=None, top_p=None, top_k=None,
            pad_token_id=steerer.tokenizer.eos_token_id,
        )
    return steerer.tokenizer.decode(
        out[0, ids.shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


def test_concurrent_requests_with_different_steering_each_get_their_own_reply(
    smol, tmp_path, api_server
):
    session = ModelSession(lambda: smol, data=DataFolder(tmp_path))
    steerer = session.current().steerer
    joy = capture_vector(steerer, JOY, 12, 1.0, GRIEF)
    save_vectors(session.data.vectors_dir / "joy.safetensors", [joy], steerer.info)
    active = joy.with_strength(0.1)
    steerer.set_vectors([active])
    server, queue = api_server(session)
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)

    requests = {
        "joy": ("Describe your morning in two sentences.",
                {"vectors": [{"name": "joy", "strength": 0.25}]}),
        "grief at layer 8": ("Tell me about the sea.",
                             {"vectors": [{"name": "joy", "layer": 8, "strength": -0.25}]}),
        "unsteered": ("What is your favourite colour, and why?", False),
        "the app's vector": ("Describe your morning in two sentences.", None),
    }

    def ask(prompt, steering):
        reply = client.chat.completions.create(
            model=smol.name, messages=[{"role": "user", "content": prompt}], max_tokens=TOKENS,
            temperature=0, extra_body={"steering": steering},
        )
        return reply.choices[0].message.content, reply.model_extra["steering"]

    alone = {name: ask(*request) for name, request in requests.items()}
    assert queue.status().batches == len(requests)

    together: dict[str, tuple[str, list]] = {}
    threads = [
        threading.Thread(target=lambda n=name, r=request: together.__setitem__(n, ask(*r)))
        for name, request in requests.items()
    ]
    with session.lock:  # they wait together for the model, then share one batch
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while queue.status().waiting < len(requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.status().waiting == len(requests)
    for thread in threads:
        thread.join(300)
    assert queue.status().batches == len(requests) + 1  # all four in one generation
    assert together == alone

    # what "alone" means, by the library's plain path
    for name, vectors in (
        ("joy", [joy.with_strength(0.25)]),
        ("grief at layer 8", [recapture(steerer, joy, 8).with_strength(-0.25)]),
        ("unsteered", []),
        ("the app's vector", [active]),
    ):
        prompt = requests[name][0]
        assert alone[name][0] == _alone(steerer, [{"role": "user", "content": prompt}], vectors)
    moved = alone["grief at layer 8"][1]
    assert [(v["layer"], round(v["strength"], 6)) for v in moved] == [(8, -0.25)]
    # steering changed the replies, and the app's vector did not reach the others
    assert alone["joy"][0] != alone["the app's vector"][0]
    assert alone["unsteered"][1] == [] and alone["the app's vector"][1][0]["id"] == active.id
    assert steerer.vectors == (active,) and steerer.steered_layers() == [12]
