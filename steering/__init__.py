"""Capture concept vectors and steer a model's hidden states with them."""

from steering.capture import capture, capture_vector, recapture, split_prompts
from steering.engine import Steerer, steerer_for
from steering.errors import (
    IncompatibleVectorError,
    InvalidInputError,
    NoModelError,
    SteerSwarmError,
    UnsupportedModelError,
    VectorFileError,
)
from steering.extract import METHODS, VectorSource, get_method, register
from steering.generate import GenerationSettings, complete, reply, stream_reply
from steering.models import LoadedModel, ModelInfo, find_decoder_layers, load_model, model_info
from steering.store import load_vectors, save_vectors
from steering.vector import MAX_ABS_ALPHA, SteeringVector

__all__ = [
    "MAX_ABS_ALPHA",
    "METHODS",
    "GenerationSettings",
    "IncompatibleVectorError",
    "InvalidInputError",
    "LoadedModel",
    "ModelInfo",
    "NoModelError",
    "SteerSwarmError",
    "Steerer",
    "SteeringVector",
    "UnsupportedModelError",
    "VectorFileError",
    "VectorSource",
    "capture",
    "capture_vector",
    "complete",
    "find_decoder_layers",
    "get_method",
    "load_model",
    "load_vectors",
    "model_info",
    "recapture",
    "register",
    "reply",
    "save_vectors",
    "split_prompts",
    "steerer_for",
    "stream_reply",
]
