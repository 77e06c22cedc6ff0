"""What the edge of the bridge must know about the world: maps, reward caps and kinds.

The kinds are the world's own (``World.kinds``): protocol v1 plus whatever its plugins
declared, so a world with an extra event kind accepts it on the wire with no change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from norn.bridge import protocol as proto
from norn.engine import limits
from norn.engine.errors import ConfigError
from norn.engine.kinds import Kinds


@dataclass(frozen=True)
class WorldView:
    """The world's maps (index = map_id) with their sizes, the caps of rewards, its kinds."""

    map_names: tuple[str, ...]
    map_sizes: tuple[tuple[int, int], ...]  # (width, height) in cells
    reward_zeny_max: int
    reward_amount_max: int
    kinds: Kinds = field(default_factory=Kinds.protocol_v1, compare=False)
    wire: proto.WireSchema = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", proto.WireSchema.of(self.kinds))
        names = tuple(str(n) for n in self.map_names)
        sizes = tuple((int(w), int(h)) for w, h in self.map_sizes)
        object.__setattr__(self, "map_names", names)
        object.__setattr__(self, "map_sizes", sizes)
        if len(names) != len(sizes):
            raise ConfigError(f"WorldView: {len(names)} map names but {len(sizes)} map sizes")
        if len(names) > proto.INT16_MAX:
            raise ConfigError(f"WorldView: {len(names)} maps > {proto.INT16_MAX}")
        if len(set(names)) != len(names):
            raise ConfigError("WorldView: map names are not unique")
        for n, (w, h) in zip(names, sizes, strict=True):
            if not 0 < len(n.encode()) <= limits.map_name_bytes_max:
                raise ConfigError(
                    f"WorldView: map name {n!r} must be 1..{limits.map_name_bytes_max} bytes"
                )
            if not (0 < w <= proto.INT16_MAX and 0 < h <= proto.INT16_MAX):
                raise ConfigError(f"WorldView: map {n!r} size {w}x{h} out of 1..{proto.INT16_MAX}")
        if not 0 <= self.reward_zeny_max <= limits.zeny_max:
            raise ConfigError(f"WorldView: reward_zeny_max must be in [0, {limits.zeny_max}]")
        if not 0 <= self.reward_amount_max <= limits.item_stack_max:
            raise ConfigError(
                f"WorldView: reward_amount_max must be in [0, {limits.item_stack_max}]"
            )
