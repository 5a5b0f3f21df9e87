"""Chat tab handlers on the tiny model: streaming, the unsteered comparison,
refused input, and the model lock."""

from __future__ import annotations

import itertools

import pytest

from steering import capture_vector
from steering.session import ModelSession
from ui import compat, format as fmt
from ui.chat_tab import ChatActions


def run(gen):
    """Every view the chat handler yields; each must fill its 6 outputs."""
    values = list(gen)
    assert values and all(len(v) == 6 for v in values), [len(v) for v in values]
    return values


@pytest.fixture
def session(tiny_session):
    return tiny_session


@pytest.fixture
def steered_session(session):
    """The tiny model with one strong vector, so steered replies differ."""
    steerer = session.current().steerer
    steerer.add(capture_vector(steerer, ["I love sunny days."], 1, 40.0, ["I hate rain."]))
    return session


def reply_of(chatbot_value):
    """The last assistant text in a Chatbot value of either format."""
    if compat.CHATBOT_MESSAGES:
        return chatbot_value[-1]["content"]
    return chatbot_value[-1][1]


def test_reply_streams_and_is_recorded(session):
    views = run(ChatActions(session).send("Hello there!", [], [], False, 12, 0))
    assert len(views) > 3  # token by token
    steered, _unsteered, history, log, box, status = views[-1]
    assert status.startswith(
        "✓ Replied with no steering vectors active (add some in the Steering tab)."
    )
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "Hello there!" and history[1]["content"]
    assert log == [] and box == ""
    assert reply_of(steered) == history[1]["content"]
    # streamed text only grows
    texts = [reply_of(v[0]) for v in views[:-1] if v[0] != {"__type__": "update"}]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))


def test_compare_shows_the_unsteered_reply_beside(steered_session):
    session = steered_session
    steerer = session.current().steerer
    vectors = steerer.vectors
    *_, final = run(ChatActions(session).send("Tell me about your day.", [], [], True, 12, 0))
    _steered, unsteered, history, log, _, status = final
    assert "1 steering vector active; the unsteered reply is on the right." in status
    assert [m["role"] for m in log] == ["user", "assistant"]
    assert log[0]["content"] == "Tell me about your day."
    assert reply_of(unsteered) == log[1]["content"]
    assert history[1]["content"] != log[1]["content"]
    assert steerer.vectors == vectors  # steering is back after the unsteered reply

    # the unsteered reply is what the model says with no vectors at all
    steerer.reset()
    *_, plain = run(ChatActions(session).send("Tell me about your day.", [], [], False, 12, 0))
    assert plain[2][1]["content"] == log[1]["content"]


def test_second_turn_uses_the_conversation(steered_session):
    actions = ChatActions(steered_session)
    *_, first = run(actions.send("Hi!", [], [], True, 8, 0))
    *_, second = run(actions.send("And then?", first[2], first[3], True, 8, 0))
    assert [m["content"] for m in second[2][::2]] == ["Hi!", "And then?"]
    assert [m["content"] for m in second[3][::2]] == ["Hi!", "And then?"]


@pytest.mark.parametrize("message", ["", "   ", None])
def test_empty_message_is_refused(session, message):
    (view,) = run(ChatActions(session).send(message, [], [], True, 12, 0))
    assert view[-1] == "⚠ Type a message first."
    assert all(v == {"__type__": "update"} for v in view[:5])


@pytest.mark.parametrize(
    ("max_new_tokens", "temperature", "needle"),
    [
        (0, 0, "Max new tokens"),
        (99999, 0, "Max new tokens"),
        (10, 9, "Temperature"),
        (None, 0, "Could not reply"),
    ],
)
def test_bad_settings_are_refused(session, max_new_tokens, temperature, needle):
    (view,) = run(ChatActions(session).send("Hi", [], [], False, max_new_tokens, temperature))
    assert view[-1].startswith("⚠ Could not reply") and needle in view[-1]


def test_conversation_longer_than_the_context_is_refused(session):
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    long_message = " ".join(["word"] * 200)  # the tiny model's context is 128 tokens
    *_, final = run(ChatActions(session).send(long_message, history, [], True, 16, 0))
    steered, _, new_history, new_log, box, status = final
    assert status.startswith("⚠ Could not reply") and "exceeds the model's context of 128" in status
    assert new_history == {"__type__": "update"} and new_log == {"__type__": "update"}
    assert box == {"__type__": "update"}  # the message stays, to be shortened
    assert steered == compat.to_chatbot(history)


def test_no_model_is_reported(tmp_path):
    *_, final = run(ChatActions(ModelSession(lambda: None)).send("Hi", [], [], True, 8, 0))
    assert (
        final[-1]
        == "⚠ Could not reply: No model is loaded. Load a model first. Nothing was changed."
    )


def test_clear():
    assert ChatActions.clear() == ([], [], [], [], "", "Chat cleared.")


def test_compare_checkbox_shows_the_unsteered_chat():
    assert ChatActions.show_unsteered(True)["visible"] is True
    assert ChatActions.show_unsteered(False)["visible"] is False


def test_chat_waits_while_the_model_is_busy(session):
    """An optimization (or any model job) holds the lock: chat says it waits."""
    session.lock.acquire()
    gen = ChatActions(session).send("Hi", [], [], False, 4, 0)
    try:
        assert next(gen)[-1] == fmt.WAITING
    finally:
        session.lock.release()
    assert run(gen)[-1][-1].startswith("✓ Replied")


def test_generation_runs_under_the_lock(steered_session, monkeypatch):
    from ui import chat_tab

    held = []
    real = chat_tab.stream_reply

    def spy(*args, **kwargs):
        for text in real(*args, **kwargs):
            held.append(steered_session.lock.locked())
            yield text

    monkeypatch.setattr(chat_tab, "stream_reply", spy)
    run(ChatActions(steered_session).send("Hi", [], [], True, 6, 0))
    assert held and all(held)
    assert not steered_session.lock.locked()


def test_messages_convert_to_either_chatbot_format():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert compat.to_chatbot(messages, as_messages=True) == messages
    assert compat.to_chatbot(messages, as_messages=False) == [["a", "b"], ["c", None]]
    assert compat.to_chatbot([], as_messages=False) == []


def test_a_reply_cut_at_the_token_limit_says_so(session):
    """A reply that stopped at the token limit looked finished; now it ends
    with a mark and the status says how to read on."""
    from ui.chat_tab import CUT_MARK

    *_, (steered, _u, history, _log, _box, status) = run(
        ChatActions(session).send("Hello there!", [], [], False, 3, 0)
    )
    # the random tiny model does not end a reply within 3 tokens
    assert history[1]["content"].endswith(CUT_MARK) and reply_of(steered).endswith(CUT_MARK)
    assert "✂ The steered reply stopped at the token limit (3 new tokens)" in status
    assert "Max new tokens" in status


def test_a_reply_that_ends_is_not_marked():
    import torch

    from steering.generate import ReplyEnd, _Count

    end = ReplyEnd()
    count = _Count(end, prompt=5, stops={2})
    count(torch.tensor([[1, 1, 1, 1, 1, 7, 8, 2]]), torch.zeros(1))
    assert end.tokens == 3 and count.ended  # the last token ends the reply
