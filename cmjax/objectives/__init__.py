"""Objectives: loss terms looked up by `type` from `config.objectives`, summed with weights.

See `cmjax/objectives/base.py` for the contract; the built-in terms are
`clip`, `siglip` (contrastive.py), `alignment` (alignment.py: squared distance
with VICReg / Barlow Twins terms) and `classification` (classification.py).
"""

from cmjax.objectives.base import OBJECTIVES, BuildContext, Objective, WeightedSum, build, register

__all__ = ["OBJECTIVES", "BuildContext", "Objective", "WeightedSum", "build", "register"]
