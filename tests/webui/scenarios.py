"""What a webui user does with the extension, as plain functions that assert.

Each scenario gets a fresh folder and the tokenizer, builds a stand-in webui
(harness.Webui), loads the extension the webui's way, builds its tab inside
`gr.Blocks` and drives the handlers the page registered.
tests/integration/test_webui_extension.py runs them under the current Gradio;
tests/webui/gradio4_check.py runs `GRADIO4` under Gradio 4.37 in .venv-gradio4.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from harness import NAME, REPO, ROUTES, Webui, last, tiny_llama

TASKS = str(REPO / "tasks")
PROMPTS = ("I love this!\nWhat a wonderful day.", "I hate this.\nWhat an awful day.")
PROBE = torch.tensor([[1, 400, 2000, 30, 7]])


def _logits(model: Any) -> torch.Tensor:
    """What the webui's chat computes with shared.model, on a fixed input."""
    with torch.no_grad():
        return model(PROBE).logits


def _choices(webui: Webui) -> list[str]:
    """The ids of the active vectors (what the Optimize tab's checkboxes hold)."""
    from steering import steerer_for

    model, tokenizer = webui.shared.model, webui.shared.tokenizer
    return [vector.id for vector in steerer_for(model, tokenizer).vectors]


def _form(**override: Any) -> list[Any]:
    """The Optimize form's values in the order of its fields, small and quick:
    no held-out share and the target alone (the defaults are tested in
    test_ui_front.py); 4 documents, 2 of them confirming the finalists."""
    from ui.optimize_form import NAMES

    form = {
        "task": "steer_sentiment", "task_folder": TASKS, "metric": "acc", "limit": 4,
        "batch_size": 4, "particles": 2, "iterations": 1, "budget": 0, "layer_min": 0,
        "layer_max": 3, "unit": "alpha", "strength_min": -0.4, "strength_max": 0.4,
        "alpha_min": -4.0, "alpha_max": 4.0, "c1": 0.5, "c2": 0.3, "w": 0.9,
        "velocity_limit": 0.25, "seed": 0,
        "heldout_task": "", "heldout_limit": 4, "holdout_fraction": 0.0,
        "confirm_fraction": 0.5, "finalists": 2, "significance": 0.05, "strategy": "pso",
        "objective": "target",
        "kl_budget": 0.5, "guard_task": "", "max_guard_drop": 5.0, "workers": 0,
    }
    form.update(override)
    return [form[name] for name in NAMES]


def _recommending(result: Any) -> Any:
    """`result` as if its best search setting had passed the confirmation
    (12 documents fixed, 1 broken): a tiny random model's run rarely does, and
    the scenarios test that applying works in the webui."""
    import dataclasses

    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation

    best = dataclasses.replace(result.best, score=result.baseline.score + 0.5, metrics={})
    history = [best if e is result.best else e for e in result.history]
    test = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])
    confirmation = Confirmation(13, "13", result.baseline, (best,), (test,), 0.05)
    return dataclasses.replace(
        result, best=best, history=history, confirmation=confirmation, confirm_planned=True
    )


def _optimize(webui: Webui, choices: list[str], **override: Any) -> Any:
    """Run "Optimize vectors" with a small, quick setting; the final view."""
    return webui.call("optimize", choices, *_form(**override))


def _add(webui: Webui, layer: int = 1, alpha: float = 3.0) -> str:
    _table, _choices, status = webui.call("add_vector", *PROMPTS, layer, alpha)
    return status


# -- loading -------------------------------------------------------------------


def loads_like_the_webui(tmp: Path, tokenizer: Any) -> None:
    """Both import routes; params; setup(); the tab built by ui() in gr.Blocks."""
    for route in ROUTES:
        with Webui(tmp / route, route) as webui:
            webui.set_model(tiny_llama(tokenizer), tokenizer)
            script = webui.load()
            expected = (
                "extensions.steerswarm.script" if route == "extensions" else "user_ext_steerswarm"
            )
            assert script.__name__ == expected, script.__name__
            import extension

            assert script.params is extension.params  # the webui's settings reach the tab
            assert script.params["display_name"] == "Steering"
            assert script.params["is_tab"] is True
            assert script in webui.extensions.setup_called
            webui.build()
            texts = webui.texts()
            for label in ("Steering", "Optimize", "Add steering vector",
                          "Optimize vectors", "Reset steering vectors", "Apply best"):
                assert label in texts, label
            assert not {"Send", "Compare with unsteered"} & set(texts)  # the webui has the chat
            assert any("Chat in the webui's own Chat tab" in t for t in texts)
            assert any("tiny-webui · 4 layers" in t for t in texts)


def settings_persist(tmp: Path, tokenizer: Any) -> None:
    """Saved `steerswarm-<key>` settings fill the form (an older `-coefficient`
    fills Alpha); what the user enters is saved back by "Save settings" and fills
    the form after a restart."""
    saved = {f"{NAME}-layer": 2, f"{NAME}-coefficient": 3.5, f"{NAME}-optimize_particles": 9}
    with Webui(tmp / "first") as webui:
        webui.shared.settings.update(saved)
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        webui.build()
        assert webui.component("Layer").value == 2
        assert webui.component("Alpha").value == 3.5
        assert webui.component("Particles").value == 9
        from optimize.config.table import BY_NAME  # the extension is loaded: its packages import

        # not saved: the default
        assert webui.component("Iterations").value == BY_NAME["iterations"].default
        webui.on_change("Layer")(1)
        webui.on_change("Alpha")(-2.5)
        webui.on_change("Lowest alpha")(-3.0)
        webui.on_change("Seed")(7)
        webui.on_change("What “better” means")("my_task")
        webui.on_change("Particles")(None)  # a cleared box is not saved over the value
        from modules import ui as webui_ui

        written = yaml.safe_dump(webui_ui.extension_settings([NAME]))
    restored = yaml.safe_load(written)
    assert restored[f"{NAME}-layer"] == 1 and restored[f"{NAME}-alpha"] == -2.5
    assert restored[f"{NAME}-optimize_particles"] == 9
    with Webui(tmp / "second") as webui:
        webui.shared.settings.update(restored)
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        webui.build()
        goal = "What “better” means"
        values = {label: webui.component(label).value for label in
                  ("Layer", "Alpha", "Lowest alpha", "Seed", goal, "Particles")}
        assert values == {"Layer": 1, "Alpha": -2.5, "Lowest alpha": -3.0, "Seed": 7,
                          goal: "my_task", "Particles": 9}, values


def bad_settings_fall_back(tmp: Path, tokenizer: Any) -> None:
    """A hand-edited settings.yaml with nonsense, or a layer the new model lacks."""
    with Webui(tmp) as webui:
        webui.shared.settings.update(
            {f"{NAME}-layer": 99, f"{NAME}-coefficient": "strong", f"{NAME}-optimize_limit": 2.5,
             f"{NAME}-optimize_layer_max": 40, f"{NAME}-optimize_seed": True}
        )
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        webui.build()
        assert webui.component("Layer").value == 3  # within the model's 4 layers
        assert webui.component("Alpha").value == 1.0  # the default
        assert webui.component("Limit").value == 400
        assert webui.component("Highest layer").value == 3
        assert webui.component("Seed").value == 0


def ui_never_raises(tmp: Path, tokenizer: Any) -> None:
    """Nothing in the webui catches an exception from ui(): it must show it instead."""
    import ui.app

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TypeError("Slider.__init__() got an unexpected keyword argument 'min'")

    original = ui.app.build_tabs
    ui.app.build_tabs = broken
    try:
        with Webui(tmp) as webui:
            webui.load()
            webui.build()  # create_extensions_tabs() returns normally
            assert any("Activation Steering could not start: TypeError" in t for t in webui.texts())
    finally:
        ui.app.build_tabs = original


def optimize_form_shows_what_applies(tmp: Path, tokenizer: Any) -> None:
    """The Optimize tab's settings beyond the goal and the time budget are in a
    folded Advanced section, and changing the unit shows the bounds of that
    unit only: the handler the page registered, with this Gradio's updates."""
    with Webui(tmp) as webui:
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        page = webui.build()
        (advanced,) = [c for c in page.config["components"]
                       if c.get("props", {}).get("label") == "Advanced"]
        assert advanced["type"] == "accordion" and advanced["props"]["open"] is False
        unit = next(b for b in page.blocks.values() if getattr(b, "label", None) == "Unit")
        bounds = {label: webui.component(label) for label in
                  ("Lowest alpha", "Highest alpha", "Lowest strength", "Highest strength")}
        assert bounds["Lowest alpha"].visible is False  # the default unit is strength
        assert bounds["Lowest strength"].visible is True
        (shows,) = [f for f in webui._functions()
                    if (unit._id, "change") in [(t[0], t[1]) for t in f.targets]
                    and bounds["Lowest alpha"] in f.outputs]
        values = [("alpha" if block is unit else block.value) for block in shows.inputs]
        updates = dict(zip([block._id for block in shows.outputs], shows.fn(*values), strict=True))
        assert updates[bounds["Lowest alpha"]._id]["visible"] is True
        assert updates[bounds["Highest alpha"]._id]["visible"] is True
        assert updates[bounds["Lowest strength"]._id]["visible"] is False


# -- steering the webui's model ------------------------------------------------


def steers_the_webui_model(tmp: Path, tokenizer: Any) -> None:
    """Add, optimize, apply, reset through the tab's handlers, on shared.model:
    the webui's chat, which runs shared.model, is steered."""
    with Webui(tmp) as webui:
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        webui.build()
        plain = _logits(webui.shared.model)

        assert _add(webui).startswith("✓ Added vector #1: layer 1"), "add"
        steered = _logits(webui.shared.model)
        assert not torch.allclose(plain, steered)  # every reply of the webui is steered

        view = _optimize(webui, _choices(webui))
        assert view[-1].startswith("✓ Done."), view[-1]
        result = view[5]
        assert result.model == "tiny-webui" and len(result.history) == 3  # baseline + 2
        assert torch.equal(_logits(webui.shared.model), steered)  # unchanged until applied

        recommended = _recommending(result)
        _table, _choices_update, status, _opt_status, _vectors = webui.call(
            "apply_best", recommended
        )
        assert status.startswith("✓ Applied the best setting"), status

        # concept strength needs no task: the same tab scores the vector's own
        # held-out prompts (one of each here) within the KL budget
        view = _optimize(
            webui, _choices(webui), task="", objective="concept", holdout_fraction=0.5,
            kl_budget=1e6,
        )
        # (the random tiny model's replies may repeat: then its verdict says they loop)
        assert view[-1].startswith("✓ Done."), view[-1]
        assert "nats per token" in view[-1] or "makes replies loop" in view[-1], view[-1]
        assert view[5].objective == "concept" and len(view[5].history) == 3

        _table, _choices_update, status = webui.call("reset_vectors")
        assert status.startswith("✓ Removed all 1 steering vector(s)"), status
        assert torch.equal(_logits(webui.shared.model), plain)  # exactly unsteered again


def one_model_user_at_a_time(tmp: Path, tokenizer: Any) -> None:
    """While the webui generates (it holds shared.generation_lock) a vector
    change and an optimization wait; our model work runs only holding it."""
    import ui.optimize_tab
    import ui.steering_tab

    with Webui(tmp) as webui:
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        webui.build()
        lock = webui.shared.generation_lock
        held_during: list[bool] = []

        def holding(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                held_during.append(lock.locked())
                return fn(*args, **kwargs)

            return wrapped

        originals = (ui.steering_tab.capture, ui.optimize_tab.run_optimization)
        ui.steering_tab.capture = holding(originals[0])
        ui.optimize_tab.run_optimization = holding(originals[1])
        try:
            lock.acquire()  # a chat reply is being generated
            adding = webui.handler("add_vector")(*PROMPTS, 1, 3.0)
            assert "Waiting for the model" in next(adding)[2]
            lock.release()
            assert last(adding)[2].startswith("✓ Added vector #1")

            lock.acquire()
            optimizing = _optimize_gen(webui)
            first = next(optimizing)
            assert first[-1].startswith("Starting"), first[-1]
            waiting = next(optimizing)
            assert "Waiting for the model" in waiting[-1], waiting[-1]
            lock.release()
            assert last(optimizing)[-1].startswith("✓ Done."), "optimize"
        finally:
            ui.steering_tab.capture, ui.optimize_tab.run_optimization = originals
            if lock.locked():
                lock.release()
        assert held_during == [True, True], held_during
        assert not lock.locked()


def _optimize_gen(webui: Webui) -> Iterator[Any]:
    return webui.handler("optimize")(_choices(webui), *_form())


# -- model changes ---------------------------------------------------------------


def follows_model_changes(tmp: Path, tokenizer: Any) -> None:
    """Another model of the same size keeps the vectors; one of another size
    drops them with a message; an unloaded model is freed at once and the
    tab says no model is loaded; the old model is never called again."""
    with Webui(tmp) as webui:
        first = tiny_llama(tokenizer, seed=0)
        webui.set_model(first, tokenizer, "model-a")
        webui.load()
        webui.build()
        assert _add(webui, layer=2).startswith("✓ Added vector #1")

        second = tiny_llama(tokenizer, seed=1)
        webui.set_model(second, tokenizer, "model-b")  # the user loads another model
        calls: list[str] = []
        first.register_forward_pre_hook(lambda *a: calls.append("stale"))
        line, _layer, table, _ = webui.call("refresh")
        assert "model-b" in line and "Kept 1 vector(s)" in line, line
        assert len(table) == 1
        assert not torch.equal(_logits(second), _logits_unsteered(second, webui))
        assert _add(webui, layer=1).startswith("✓ Added vector #2")
        assert calls == []  # nothing ran on the model that was replaced

        wide = tiny_llama(tokenizer, seed=2, hidden_size=48)
        webui.set_model(wide, tokenizer, "model-c")
        _table, _choices_update, status = webui.call("reset_vectors")
        assert (
            "The model changed to model-c. Dropped 2 vector(s) made for a model of another size"
            in status
        ), status

        assert _add(webui).startswith("✓ Added vector #1")
        gone = weakref.ref(wide)
        del wide
        webui.set_model(None)  # unload: the webui drops it and collects garbage
        assert gone() is None  # its memory is free before the extension does anything
        _table, _choices_update, status = webui.call("add_vector", *PROMPTS, 1, 3.0)
        assert "No model is loaded" in status, status
        line, *_ = webui.call("refresh")
        assert "none" in line and "No model is loaded" in line, line


def steered_before_the_first_reply(tmp: Path, tokenizer: Any) -> None:
    """The webui loads another model of the same size (Model tab, API or an
    extension) and generates at once, with the tab untouched: the vectors are
    on the new model before its first reply, put there by the hook the webui
    runs right before `model.generate`; with no model the hook does nothing."""
    with Webui(tmp) as webui:
        webui.set_model(tiny_llama(tokenizer, seed=0), tokenizer, "model-a")
        webui.load()
        webui.build()
        assert _add(webui, layer=2).startswith("✓ Added vector #1")

        second = tiny_llama(tokenizer, seed=1)
        webui.set_model(second, tokenizer, "model-b")
        plain = _logits(second)
        processors: list[Any] = []
        assert webui.extensions.apply_extensions("logits_processor", processors, PROBE) == []
        assert not torch.equal(_logits(second), plain)  # steered, tab untouched
        assert torch.equal(_logits_unsteered(second, webui), plain)
        again = _logits(second)
        webui.extensions.apply_extensions("logits_processor", [], PROBE)  # nothing changed
        assert torch.equal(_logits(second), again)

        webui.set_model(None)
        assert webui.extensions.apply_extensions("logits_processor", [], PROBE) == []


def _logits_unsteered(model: Any, webui: Webui) -> torch.Tensor:
    from steering import steerer_for

    with steerer_for(model, webui.shared.tokenizer).unsteered():
        return _logits(model)


def stops_when_the_model_changes_mid_run(tmp: Path, tokenizer: Any) -> None:
    """The webui may load another model while an optimization holds the
    generation lock: the run stops at the next evaluation instead of going
    on with the old model, and says so."""
    import ui.optimize_tab

    with Webui(tmp) as webui:
        first = tiny_llama(tokenizer, seed=0)
        webui.set_model(first, tokenizer, "model-a")
        webui.load()
        webui.build()
        _add(webui)
        choices = _choices(webui)
        second = tiny_llama(tokenizer, seed=1)
        scored: list[int] = []
        original = ui.optimize_tab.run_optimization

        def run_and_swap(*args: Any, on_progress: Any, **kwargs: Any) -> Any:
            def progress(item: Any) -> None:
                scored.append(item.done)
                webui.set_model(second, tokenizer, "model-b")  # during the run
                on_progress(item)

            return original(*args, on_progress=progress, **kwargs)

        ui.optimize_tab.run_optimization = run_and_swap
        try:
            view = _optimize(webui, choices, particles=4, iterations=2)
        finally:
            ui.optimize_tab.run_optimization = original
        assert "The model changed during the optimization (model-a is no longer" in view[-1], view[
            -1
        ]
        assert scored == [1]  # the baseline only: nothing more ran on model-a
        from steering import steerer_for

        assert len(steerer_for(first, tokenizer).vectors) == 1  # restored, not applied


def refuses_models_it_cannot_steer(tmp: Path, tokenizer: Any) -> None:
    """llama.cpp, ExLlama and TensorRT-LLM models: a clear message, no crash."""

    class LlamaServer:  # llama.cpp: a client of a llama-server process
        def generate(self, prompt: str, state: dict) -> str:
            return "text"

    class Exllamav3HF(torch.nn.Module):  # a torch module, but no decoder layers inside
        def __init__(self) -> None:
            super().__init__()
            self.ex_model = torch.nn.Linear(2, 2)
            self.config = type("Config", (), {"model_type": "llama"})()

    class TensorRTLLMModel:
        pass

    for model, loader in ((LlamaServer(), "llama.cpp"), (Exllamav3HF(), "ExLlamav3_HF"),
                          (TensorRTLLMModel(), "TensorRT-LLM")):
        with Webui(tmp / loader) as webui:
            webui.shared.args.loader = loader
            webui.set_model(model, object(), "some-model")
            webui.load()
            webui.build()
            expected = f"some-model is loaded with the {loader} loader and cannot be steered here"
            assert any(expected in t for t in webui.texts()), webui.texts()
            _table, _choices_update, status = webui.call("add_vector", *PROMPTS, 1, 3.0)
            assert (
                status.startswith("⚠ Could not add the steering vector") and expected in status
            ), status
            assert "Transformers loader" in status
            # With llama.cpp, the tab points to the export llama.cpp applies itself.
            assert ("Export for llama.cpp" in status) == (loader == "llama.cpp"), status
            assert expected in webui.call("reset_vectors")[2]
            view = _optimize(webui, ["#1 layer 1 × 3: x"])
            assert expected in view[-1], view[-1]
            line, *_ = webui.call("refresh")
            assert expected in line


def follows_a_lora(tmp: Path, tokenizer: Any) -> None:
    """Applying a LoRA makes shared.model a peft PeftModel around the same
    model: the vectors stay, on the PeftModel the webui now runs, the tab
    says what happened, and optimizing works on it; removing the LoRA hands
    the base model back with the vectors still on."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from steering import steerer_for

    with Webui(tmp) as webui:
        base = tiny_llama(tokenizer)
        webui.set_model(base, tokenizer, "tiny-webui")
        webui.load()
        webui.build()
        assert _add(webui, layer=1).startswith("✓ Added vector #1")

        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        lora = get_peft_model(base, config)  # what the webui's add_lora_to_model makes
        assert isinstance(lora, PeftModel)
        webui.shared.model, webui.shared.lora_names = lora, ["tiny-lora"]
        line, _layer, table, _ = webui.call("refresh")
        assert "The model changed to tiny-webui + LoRA tiny-lora. Kept 1 vector(s)" in line, line
        assert len(table) == 1
        assert steerer_for(lora, tokenizer).steered_layers() == [1]
        assert steerer_for(base, tokenizer).steered_layers() == []  # no second hook
        assert not torch.equal(_logits(lora), _logits_unsteered(lora, webui))

        view = _optimize(webui, _choices(webui))
        assert view[-1].startswith("✓ Done."), view[-1]
        assert "LoRA tiny-lora" in view[5].model

        webui.shared.model, webui.shared.lora_names = lora.unload(), []
        _table, _choices_update, status = webui.call("reset_vectors")
        assert status.startswith("ℹ The model changed to tiny-webui. Kept 1 vector(s)"), status
        assert "Removed all 1 steering vector(s)" in status


# -- the page served by Gradio --------------------------------------------------


def served_page_works(tmp: Path, tokenizer: Any) -> None:
    """The page launched by this Gradio and driven over HTTP with its client:
    every output goes through Gradio's own (version-specific) processing."""
    from gradio_client import Client

    with Webui(tmp) as webui:
        webui.set_model(tiny_llama(tokenizer), tokenizer)
        webui.load()
        page = webui.build()
        page.queue()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        table, _choices_update, status = client.predict(*PROMPTS, 1, 3.0, api_name="/add_vector")
        assert status.startswith("✓ Added vector #1"), status
        assert table["data"][0][:3] == [1, 1, 3.0], table
        choices = _choices(webui)
        # Opening the Optimize tab offers the vectors added since the page was built.
        offered = client.predict([], api_name="/vector_choices")
        assert offered == choices or offered.get("value") == choices, offered
        view = client.predict(choices, *_form(), api_name="/optimize")
        assert view[-1].startswith("✓ Done."), view[-1]
        _table, _choices_update, status = client.predict(api_name="/reset_vectors")
        assert status.startswith("✓ Removed all 1"), status


# Every scenario, and the ones the Gradio 4 check runs (all but those that
# need packages only the main environment has).
ALL: dict[str, Callable[[Path, Any], None]] = {
    fn.__name__: fn
    for fn in (
        loads_like_the_webui,
        settings_persist,
        bad_settings_fall_back,
        ui_never_raises,
        optimize_form_shows_what_applies,
        steers_the_webui_model,
        one_model_user_at_a_time,
        follows_model_changes,
        steered_before_the_first_reply,
        stops_when_the_model_changes_mid_run,
        refuses_models_it_cannot_steer,
        follows_a_lora,
        served_page_works,
    )
}
# peft is a test dependency of the main environment only; a LoRA changes
# nothing that depends on the Gradio version.
GRADIO4 = {name: fn for name, fn in ALL.items() if name != "follows_a_lora"}
