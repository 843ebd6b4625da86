"""Fusion methods, chosen by name: `get_fusion_cls(config.model.fusion.name)`.

See `common.py` for the call contract. Pooled-vector methods are in
`pooled.py`, token-sequence methods in `tokens.py`.
"""

from cmjax.models.fusion.common import get_fusion_cls, known_fusions, register_fusion

__all__ = ["get_fusion_cls", "known_fusions", "register_fusion"]
