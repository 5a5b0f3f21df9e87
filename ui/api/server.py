"""Running the API beside the Gradio app: uvicorn in a thread of the same
process, on its own port, so both reach the one model and its lock."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from steering.errors import InvalidInputError

START_TIMEOUT_S = 30.0


class ApiServer:
    """uvicorn serving `app` on host:port from a daemon thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host, self.port = host, port
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="steerswarm-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        """Serve; returns once the port accepts connections.

        Raises:
            InvalidInputError: the port is taken (or not ours to bind).
        """
        _check_free(self.host, self.port)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise InvalidInputError(
                    f"The API server could not start on {self.host}:{self.port}; see the log."
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)


def _check_free(host: str, port: int) -> None:
    """Say clearly when the port is taken, before uvicorn logs a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidInputError(
                f"The API server cannot listen on {host}:{port}: {exc.strerror or exc}. "
                "Choose another --api-port."
            ) from None
