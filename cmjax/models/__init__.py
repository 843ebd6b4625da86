"""Models: encoders, attention/Transformer, contrastive heads, registry."""

from cmjax.models.registry import get_model, known_models, register

__all__ = ["get_model", "known_models", "register"]
