"""steerswarm as a text-generation-webui extension, and as a standalone app.

In the webui (through script.py): `ui()` builds the Steering and Optimize
tabs inside the tab the webui opens for us. They act on the webui's loaded
model (`modules.shared.model` and `.tokenizer`), looked up afresh for every
action, and take the webui's generation lock around every use of it, so an
optimization and a chat reply never run at once. Chat happens in the webui's
own chat: the vectors sit on the model, so it is steered. `params` carries
the tab's name and the form values the webui saves as `<name>-<key>`.

Standalone: `python extension.py [--model PATH] [--gguf-file FILE] [--host
127.0.0.1] [--port 7860]` loads a model (the embedded SmolLM2-135M-Instruct
by default) and serves the same tabs with a Chat tab of their own; with
`--api` also an OpenAI-compatible API with per-request steering on the same
model (docs/serving.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))  # steering/, ui/ and optimize/ live beside this file

log = logging.getLogger("steerswarm")

__all__ = [
    "custom_css", "logits_processor_modifier", "main", "params", "setup", "state_modifier", "ui"
]

from ui.settings import FIELDS as _SAVED, RENAMED as _RENAMED  # noqa: E402 - needs sys.path set

# The webui's one piece of extension state: it sets these from the settings
# `<name>-<key>` after importing us and saves them on "Save settings". The
# form values (ui/settings.py, built from optimize/config/table.py) start as
# None = "the default".
params: dict[str, Any] = {
    "display_name": "Steering",  # the webui's sidebar cuts longer names
    "is_tab": True,
    **dict.fromkeys(_SAVED),
    **dict.fromkeys(_RENAMED),  # read once from older settings, never written
    # Set by the operator (settings.yaml: steerswarm-allowed_task_folders, a
    # list of folders), never from the page: task folders the Optimize tab may
    # offer besides the shipped tasks and user_data/steerswarm/tasks. A task
    # folder holds code lm-eval runs (see docs/security.md, "Security model").
    "allowed_task_folders": None,
    # Set by the operator too (settings.yaml: steerswarm-job_confirm_minutes,
    # steerswarm-job_limit_minutes): a job (a capture, a map, an optimization)
    # estimated longer than the first waits for a go-ahead; longer than the
    # second it is refused. None: 15 minutes, and no limit.
    "job_confirm_minutes": None,
    "job_limit_minutes": None,
}

_LOADER_HINT = (
    "Steering adds vectors to the hidden states of a PyTorch model; the llama.cpp, "
    "ExLlama and TensorRT-LLM loaders run the model outside PyTorch. Load the model "
    "with the Transformers loader to steer it."
)
# The llama.cpp loader can still be steered, by llama.cpp itself (steering/gguf.py).
_LLAMA_CPP_HINT = (
    "llama.cpp can apply steerswarm's vectors itself: load the model with the Transformers "
    "loader, make or load the vectors here, click Export for llama.cpp in the Steering tab, "
    "then load the GGUF model with the llama.cpp loader and the flags shown there in its "
    "extra-flags field. Capturing and the optimizer need the Transformers loader."
)


def _loader_hint(loader: str) -> str:
    return _LLAMA_CPP_HINT if loader == "llama.cpp" else _LOADER_HINT


def _webui_shared() -> ModuleType | None:
    """The webui's `modules.shared`, or None when not running inside the webui."""
    try:
        from modules import shared
    except ImportError:
        return None
    return shared


class WebuiLock:
    """The webui's `shared.generation_lock`, looked up at each use.

    server.py creates that lock at start-up, in some versions after the
    extensions are imported, so it is not read once and kept. Until it
    exists a lock of our own stands in. Each thread releases the lock it
    acquired, even if the webui replaced it in between.
    """

    def __init__(self, shared: ModuleType) -> None:
        self._shared = shared
        self._fallback = threading.Lock()
        self._held = threading.local()

    def _lock(self) -> Any:
        lock = getattr(self._shared, "generation_lock", None)
        return lock if lock is not None else self._fallback

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lock = self._lock()
        acquired = bool(lock.acquire(blocking, timeout))
        if acquired:
            self._stack().append(lock)
        return acquired

    def release(self) -> None:
        stack = self._stack()
        if not stack:
            raise RuntimeError("release of an unacquired lock")
        stack.pop().release()

    def locked(self) -> bool:
        return bool(self._lock().locked())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _stack(self) -> list[Any]:
        stack = getattr(self._held, "locks", None)
        if stack is None:
            stack = self._held.locks = []
        return stack


def webui_model_source(shared: ModuleType) -> Callable[[], Any]:
    """A ModelSession source that reads the webui's model at each call.

    Returns None when no model is loaded. Raises UnsupportedModelError, with
    the loader named, for a model our steering cannot reach into.
    """
    from steering.errors import UnsupportedModelError
    from steering.models import LoadedModel, find_decoder_layers

    def source() -> LoadedModel | None:
        model = getattr(shared, "model", None)
        if model is None:
            return None
        name = str(getattr(shared, "model_name", "") or "")
        name = name if name and name != "None" else type(model).__name__
        loras = [str(n) for n in getattr(shared, "lora_names", None) or []]
        if loras and hasattr(model, "get_base_model"):
            name += " + LoRA " + ", ".join(loras)
        loader = getattr(getattr(shared, "args", None), "loader", None) or "another"
        try:
            find_decoder_layers(model)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(
                f"{name} is loaded with the {loader} loader and cannot be steered here: "
                f"{exc} {_loader_hint(loader)}"
            ) from exc
        tokenizer = getattr(shared, "tokenizer", None)
        if tokenizer is None:
            raise UnsupportedModelError(
                f"{name} is loaded without a tokenizer ({loader} loader); steering needs "
                f"one to turn prompts into activations. {_loader_hint(loader)}"
            )
        return LoadedModel(model=model, tokenizer=tokenizer, name=name)

    return source


class WebuiHost:
    """What the webui's module-level hooks reach: the session of the tab.

    The webui calls an extension through module functions (`ui()`, then
    hooks such as `logits_processor_modifier` on every generation), so the
    session `ui()` builds must be reachable from module level. It lives
    here, in one object made at import, rather than in loose globals.
    """

    def __init__(self) -> None:
        self.session: Any = None  # steering.session.ModelSession, once ui() ran
        self.tabs: Any = None  # ui.app.Tabs, once ui() ran

    def waiting_note(self) -> str | None:
        """What a reply that must wait for our model work is told, or None."""
        jobs = getattr(self.tabs, "jobs", None)
        return None if jobs is None else jobs.waiting_note()

    def before_reply(self) -> None:
        """Tell the user when their reply waits for an optimization, and for
        how long: a notice in the page that sent it (Gradio's toast, shown
        in the webui's Chat tab) and a line in the server log (for API
        callers). Never raises."""
        try:
            note = self.waiting_note()
            if note is None:
                return
            log.warning("steerswarm: %s", note)
            import gradio as gr

            gr.Warning(note)
        except Exception:  # pragma: no cover - defensive: the reply must go on
            log.exception("steerswarm: could not tell the reply to wait")

    def before_generation(self) -> None:
        """Put the vectors on the model the webui is about to generate with.

        After the webui loads another model (Model tab, API, idle reload, an
        extension), the first reply must already be steered: resolving the
        session carries the vectors that fit over to the new model. When the
        model did not change this is a dictionary lookup. Never raises: a
        failure here must not stop the reply.
        """
        session = self.session
        if session is None:
            return
        from steering.errors import SteerSwarmError

        try:
            notice = session.current().notice
        except SteerSwarmError:
            return  # no model, or one we cannot steer: the tab says why when opened
        except Exception:  # pragma: no cover - defensive: the reply must go on
            log.exception("steerswarm: could not check the model before generating")
            return
        if notice:
            log.info("steerswarm: %s", notice)


_HOST = WebuiHost()


def logits_processor_modifier(processor_list: list[Any], input_ids: Any = None) -> list[Any]:
    """Webui hook, called by its Transformers generation right before
    `model.generate`, holding the generation lock (chat, notebook and API
    alike): the moment to make sure the vectors are on the model in use.
    Adds no logits processor."""
    _HOST.before_generation()
    return processor_list


def state_modifier(state: dict[str, Any]) -> dict[str, Any]:
    """Webui hook, called with the generation settings as a chat reply
    starts, before it waits for the generation lock: the moment to say that
    it will wait for a running optimization. Changes no setting."""
    _HOST.before_reply()
    return state


def custom_css() -> str:
    """Webui hook: CSS added to its page (ui/style.py: form rows whose
    inputs line up whatever their help texts do)."""
    from ui.style import CSS

    return CSS


def _log_to_webui() -> None:
    """Send our log lines to the webui's console, as it does for lycoris.

    The webui points the root logger at a NullHandler, so without this our
    warnings (a reply waiting for an optimization, a tab that could not be
    built) reached no one. Older webui versions without
    `modules.logging_colors` keep Python's default."""
    try:
        from modules.logging_colors import logger as host
    except ImportError:
        return
    log.handlers = list(host.handlers)
    log.setLevel(logging.INFO)
    log.propagate = False


def setup() -> None:
    """Called once by the webui after the import. Only reports where we run:
    the model is looked up when the tab is used, not here. Never raises."""
    try:
        shared = _webui_shared()
        if shared is None:
            log.info("modules.shared is not importable: not running inside text-generation-webui")
        else:
            _log_to_webui()
            log.info("steerswarm: steering %s", getattr(shared, "model_name", "no model yet"))
    except Exception:  # pragma: no cover - defensive: the webui must start
        log.exception("steerswarm: setup failed")


def ui() -> None:
    """Build the tabs in the webui's open Blocks context.

    Never raises: nothing in the webui catches an exception from an
    extension's ui(), so one would stop the whole webui at start-up. A
    failure is shown in the tab instead.
    """
    try:
        import gradio as gr
    except Exception:  # pragma: no cover - the webui always has gradio
        log.exception("steerswarm: gradio is not importable")
        return
    try:
        from steering.persist import DataFolder
        from steering.session import ModelSession
        from ui.app import build_tabs
        from ui.settings import FormSettings

        shared = _webui_shared()
        folder = _save_dir()
        data = DataFolder(folder) if folder is not None else None
        if shared is None:
            session = ModelSession(lambda: None, data=data)
        else:
            session = ModelSession(webui_model_source(shared), lock=WebuiLock(shared), data=data)
        _HOST.session = session
        _HOST.tabs = build_tabs(
            session,
            _save_dir(),
            webui=True,
            settings=FormSettings(params),
            task_sources=_webui_task_sources(),
            limits=_webui_job_limits(),
        )
    except Exception as exc:
        log.exception("steerswarm: building the tabs failed")
        try:
            gr.Markdown(f"⚠️ Activation Steering could not start: {type(exc).__name__}: {exc}")
        except Exception:
            log.exception("steerswarm: could not show the error either")


def _save_dir() -> Path | None:
    """Where saved vectors and optimization results go in the webui: beside
    its other user files (user_data/steerswarm, made on the first save), or
    a temporary folder when the webui has no user_data folder."""
    user_data = Path("user_data")
    return (user_data / "steerswarm").resolve() if user_data.is_dir() else None


def _webui_task_sources() -> Any:
    """The webui's allowed task sources: the shipped tasks, user_data/steerswarm/tasks,
    and the folders of the `allowed_task_folders` setting. A setting of the
    wrong kind, or a folder that may never be allowed, is left out with a
    log line (the webui must start)."""
    from optimize.scoring.task_sources import AllowedTaskSources, TaskSourceError

    data_dir = _save_dir()
    sources = AllowedTaskSources.default(data_dir)
    wanted = params.get("allowed_task_folders")
    if isinstance(wanted, str):
        wanted = [wanted]
    if wanted is not None and not (
        isinstance(wanted, list) and all(isinstance(f, str) for f in wanted)
    ):
        log.error("steerswarm: ignoring allowed_task_folders=%r: not a list of folders", wanted)
        wanted = None
    for folder in wanted or []:
        try:
            sources = AllowedTaskSources((*sources.folders, Path(folder)))
        except TaskSourceError as exc:
            log.error("steerswarm: %s It is not offered.", exc)
    return sources


def _webui_job_limits() -> Any:
    """The operator's job limits from the webui's settings (see `params`); a
    setting that is not a number above 0 is left out with a log line (the
    webui must start)."""
    from ui.jobs import JobLimits

    minutes: dict[str, float | None] = {}
    for key in ("job_confirm_minutes", "job_limit_minutes"):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            minutes[key] = float(value)
            continue
        if value is not None:
            log.error("steerswarm: ignoring %s=%r: not a number of minutes above 0", key, value)
        minutes[key] = None
    return JobLimits.from_minutes(minutes["job_confirm_minutes"], minutes["job_limit_minutes"])


def _minutes(text: str) -> float:
    """An argparse type: minutes above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"minutes must be above 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python extension.py",
        description="Serve the steerswarm activation-steering app (Steering, Chat, Optimize).",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="local model folder or hub id (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--gguf-file",
        default=None,
        help="GGUF file inside --model, or a path to one when --model is not given",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the app's data folder: the session (active vectors, restored at start), saved "
        "vector files and results; its tasks/ subfolder is an allowed task folder "
        "(default: $XDG_DATA_HOME/steerswarm or ~/.local/share/steerswarm)",
    )
    parser.add_argument(
        "--allow-task-folder",
        action="append",
        default=[],
        metavar="DIR",
        help="also offer the lm-eval tasks in DIR on the Optimize tab (repeatable). A task "
        "folder holds Python that lm-eval runs: allow only folders you trust, and "
        "never one visitors can write to (the upload and temporary folders are refused)",
    )
    api = parser.add_argument_group(
        "OpenAI-compatible API (docs/serving.md): /v1/chat/completions, /v1/completions and "
        "/v1/models on the same model, with per-request steering"
    )
    api.add_argument("--api", action="store_true", help="also serve the API (off by default)")
    api.add_argument(
        "--api-host",
        default="127.0.0.1",
        help="address the API listens on (default 127.0.0.1: this machine only)",
    )
    api.add_argument("--api-port", type=int, default=7861, help="port of the API (default 7861)")
    api.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_VARIABLE),
        help=f"require `Authorization: Bearer KEY` on every API request (default: the "
        f"{API_KEY_VARIABLE} environment variable, which keeps the key out of the process "
        "list; none: no key)",
    )
    parser.add_argument(
        "--confirm-jobs-over",
        type=_minutes,
        default=None,
        metavar="MINUTES",
        help="a job (a capture, a task vector, an Explore map, an optimization) estimated "
        "longer than this waits for a click of its Go on button (default 15)",
    )
    parser.add_argument(
        "--refuse-jobs-over",
        type=_minutes,
        default=None,
        metavar="MINUTES",
        help="refuse any job estimated longer than this (default: no limit); set it when "
        "others can reach the app, so no visitor holds the model for hours",
    )
    return parser


API_KEY_VARIABLE = "STEERSWARM_API_KEY"


def _busy_note(tabs: Any) -> Callable[[], str | None]:
    """What API requests waiting for the model are told: the Optimize tab's
    note on a running optimization (its progress and time left)."""

    def note() -> str | None:
        actions = getattr(tabs, "optimize_actions", None)
        return None if actions is None else actions.run_status.waiting_note()

    return note


def _start_api(session: Any, tabs: Any, args: argparse.Namespace) -> Callable[[], None]:
    """Serve the OpenAI-compatible API on the app's session; returns what stops it."""
    from steering.serving import GenerationQueue, VectorCatalog
    from ui.api import ApiServer, build_api

    if not args.api_key and args.api_host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the API listens on %s without a key: anyone who reaches that address can use the "
            "model; set --api-key or %s",
            args.api_host,
            API_KEY_VARIABLE,
        )
    queue = GenerationQueue(session, VectorCatalog(session.data), busy_note=_busy_note(tabs))
    api = build_api(session, queue, args.api_key or None)
    server = ApiServer(api, args.api_host, args.api_port)
    try:
        server.start()
    except BaseException:
        queue.close()
        raise
    keyed = " (API key required)" if args.api_key else ""
    log.info("OpenAI-compatible API on %s%s", server.url, keyed)

    def stop() -> None:
        server.stop()
        queue.close()

    return stop


def _end_on_sigterm() -> None:
    """SIGTERM ends the app as Ctrl-C does: Gradio closes its server, and the
    interpreter exits normally, so the local Ray a run started is shut down
    (killed by SIGTERM's default action, the app left Ray's agents running)."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


def _shut_down_ray() -> None:
    """Stop a Ray this process started (a run's workers), if Ray was used."""
    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            log.info("stopping the local Ray")
            ray.shutdown()
    except Exception:  # pragma: no cover - exiting anyway
        log.exception("could not stop Ray")


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and serve the app until interrupted; returns an exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from optimize.scoring.task_sources import AllowedTaskSources
    from steering.errors import SteerSwarmError
    from steering.models import load_model
    from steering.outputs import default_data_dir
    from steering.persist import DataFolder
    from steering.session import ModelSession
    from ui.app import build_app_with_tabs
    from ui.jobs import JobLimits
    from ui.style import css_kwargs

    data_dir = args.data_dir or default_data_dir()
    try:
        sources = AllowedTaskSources.default(data_dir, args.allow_task_folder)
        loaded = load_model(args.model, args.gguf_file)
    except SteerSwarmError as exc:
        log.error("%s", exc)
        return 2
    session = ModelSession(lambda: loaded, data=DataFolder(data_dir))
    try:
        restored = session.current().notice  # the last session's vectors, before serving
    except SteerSwarmError as exc:  # a model we cannot steer: the tabs say why
        restored = str(exc)
    log.info("data folder %s%s", data_dir, f": {restored}" if restored else "")
    limits = JobLimits.from_minutes(args.confirm_jobs_over, args.refuse_jobs_over)
    app, tabs = build_app_with_tabs(session, task_sources=sources, limits=limits)
    app.queue()
    stop_api = None
    if args.api:
        try:
            stop_api = _start_api(session, tabs, args)
        except SteerSwarmError as exc:
            log.error("%s", exc)
            return 2
    log.info("serving on http://%s:%d (%s)", args.host, args.port, limits.describe())
    _end_on_sigterm()
    try:
        app.launch(server_name=args.host, server_port=args.port, **css_kwargs(app.launch))
    finally:
        if stop_api is not None:
            stop_api()
        _shut_down_ray()
    return 0


if __name__ == "__main__":
    sys.exit(main())
