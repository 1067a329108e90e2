"""The component table: the model-independent names of a Unet's parts.

A model adapter reads the table off the traced graph (``ablang.trace``); the resolver checks a
study against it; ``ablang inspect`` prints it. Nothing here knows about torch.

Names follow LANGUAGE.md: ``enc[i]`` and ``dec[i]`` in execution order, ``mid``, and ``skip[i]``
for the connection that carries ``enc[i]``'s output into the decoder block that concatenates it.
``level[k]`` is not a component of its own: it selects the enc/dec blocks and skips whose
resolution level is k (0 = full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["enc", "mid", "dec", "skip"]
KINDS: tuple[Kind, ...] = ("enc", "mid", "dec", "skip")


@dataclass(frozen=True)
class Component:
    """One addressable part of a Unet.

    ``droppable`` says whether ``drop`` has a meaning: the block's output shape equals its input
    shape (drop = identity) or the block has a shortcut path of its own (drop = that path). Skips
    are always droppable (the decoder receives zeros). ``drop_note`` explains a ``False``.
    """

    kind: Kind
    index: int | None  # None for mid
    level: int  # resolution level, 0 = full resolution
    # spatial size where the component sits: an encoder block's output (the skip it makes), a
    # decoder block's input (the skip it takes), so enc[i], skip[i] and its decoder share a level
    resolution: int
    channels: int  # channels of the component's output
    params: int = 0  # parameters owned by the component (0 for skips)
    flops_share: float = 0.0  # fraction of one Unet forward's FLOPs spent in it
    droppable: bool = True
    drop_note: str = ""
    module: str = ""  # the model's own module path(s), for people: "input_blocks.3"
    feeds: str | None = None  # skips: the decoder component that concatenates it, "dec[8]"

    @property
    def name(self) -> str:
        return "mid" if self.kind == "mid" else f"{self.kind}[{self.index}]"


@dataclass(frozen=True)
class ComponentTable:
    """Every component of one model, plus the facts about the model a study is checked against."""

    model: str  # as in a study's model line: "tiny", "glide PATH", ...
    components: tuple[Component, ...]
    num_timesteps: int = 1000  # T: the model's training diffusion steps; t ranges over [0, T)
    prompt_kind: Literal["class", "text", "none"] = "class"
    num_levels: int = field(default=0)
    # a class-conditional model's prompts, exactly as a study writes them; () = not known here
    classes: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = ()  # (C, H, W) of the images it makes; () = not known here
    # diffusers models: the directory's scheduler class and the ones its config can build
    scheduler: str = ""
    schedulers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.num_levels and self.components:
            object.__setattr__(self, "num_levels", 1 + max(c.level for c in self.components))

    def of_kind(self, kind: Kind) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.kind == kind)

    def count(self, kind: Kind) -> int:
        return len(self.of_kind(kind))

    def get(self, name: str) -> Component | None:
        for c in self.components:
            if c.name == name:
                return c
        return None

    def __getitem__(self, name: str) -> Component:
        c = self.get(name)
        if c is None:
            raise KeyError(name)
        return c

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def at_level(self, level: int) -> tuple[Component, ...]:
        """The enc/dec blocks and skips at resolution level ``level`` (what ``level[k]`` selects)."""
        return tuple(c for c in self.components if c.kind != "mid" and c.level == level)
