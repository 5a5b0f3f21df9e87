"""The OpenAI-compatible server of the standalone app (`python extension.py
--api`): HTTP only; per-request steering lives in steering/serving."""

from ui.api.app import build_api
from ui.api.server import ApiServer

__all__ = ["ApiServer", "build_api"]
