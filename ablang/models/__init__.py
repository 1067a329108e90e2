"""Model adapters: the only model-specific code in ablang.

``component_table(spec)`` gives the component table a study is resolved against.
"""

from __future__ import annotations

from ablang.components import ComponentTable
from ablang.errors import AblangError
from ablang.plan import ModelSpec


class ModelUnavailable(AblangError):
    """The model a study names cannot be loaded here (missing file or package)."""


def component_table(spec: ModelSpec) -> ComponentTable:
    """The component table of the model ``spec`` names, without running it.

    Raises ``ModelUnavailable`` when the model (its file or its package) is not at hand.
    """
    from ablang.models.registry import load_adapter

    return load_adapter(spec).component_table()
