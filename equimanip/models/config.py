"""NetworkConfig: everything that decides the shape of an Equivariant SAC actor or critic.

API::

    cfg = NetworkConfig()                 # the CPU configuration (the default without a GPU)
    cfg = NetworkConfig.paper()           # equi_rl's size: C8, n_hidden 64, 128 x 128
    cfg = NetworkConfig.for_device("cuda" | "cpu" | "auto")
    cfg = NetworkConfig.cpu(group="d4")   # either, with fields overridden
    cfg.validate(); cfg.to_dict(); NetworkConfig.from_dict(d)

The checkpoint stores ``to_dict()``; ``from_dict`` refuses unknown keys so a checkpoint from a
newer layout fails with a clear message instead of building a different network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from equimanip import symmetry as sym

TOPS = ("paper", "compact")
SO2_NONLINEARITIES = ("gated", "norm")


# center_inputs: what each input channel is centred on and divided by, in channel order (heights or
# gripper-view depths, clipped at 0.32 m as equi_rl's; gripper aperture 0..1; goal channel 0..1).
INPUT_CENTRES = (0.16, 0.5, 0.5)
INPUT_SCALES = (0.16, 0.5, 0.5)


@dataclass(frozen=True)
class NetworkConfig:
    # Symmetry group by name (equimanip.symmetry.GROUPS): c4 c8 c16 d4 d8 so2, or none (plain CNN).
    group: str = "c8"
    # Width: regular fields of the widest encoder layers (equi_rl's n_hidden); the layers take
    # n/8, n/4, n/2, n, 2n, n, n. A multiple of 8. 'none' uses about sqrt(8) n channels (the
    # parameter count of C8 at the same n), so/2 as many band-limited copies as n.
    n_hidden: int = 8
    # Input: square heightmap side in pixels (ObservationConfig.heightmap_size must match) and
    # channels (heights + gripper aperture).
    heightmap_size: int = 64
    in_channels: int = 2
    # The top of the encoder once the image is small: 'paper' is equi_rl's (two 3x3 layers at 8 x 8,
    # pool to 3 x 3, 3x3 to 1 x 1); 'compact' pools once more first and works at 4 x 4, 2 x 2, 1 x 1
    # (the same widths at a quarter of the pixels: the CPU configuration).
    top: str = "compact"
    # Relaxed (approximately equivariant) encoder convolutions on finite groups: kernel banks per
    # layer and the strength of the penalty pulling the mixing weights toward exact equivariance.
    relaxed: bool = False
    relaxed_banks: int = 2
    relaxed_strength: float = 1e-3
    # SO(2): band limit of the hidden fields and their nonlinearity ('gated' or 'norm').
    so2_max_frequency: int = 3
    so2_nonlinearity: str = "gated"
    # Actor log-std clamp (equi_rl's).
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    # Centre and scale the input channels before the first convolution (INPUT_CENTRES /
    # INPUT_SCALES: depths 0..0.32 m and the aperture and goal 0..1 to -1..1). Raw, a 4 cm block
    # changes the depth channel by 0.04 beside a constant aperture plane of 1, and at n_hidden 8 the
    # first layer is one regular field; scaled, the block's signal is 6 times larger. Supervised on
    # the expert's actions, the initial actors of 2 of 7 run seeds learnt nothing raw and all 7
    # learnt centred (docs/equivariant_sac.md, stop 27). Off by default and for every checkpoint
    # from before it (their networks were trained without it).
    center_inputs: bool = False

    @classmethod
    def paper(cls, **overrides) -> "NetworkConfig":
        """equi_rl's networks: C8, n_hidden 64, 128 x 128, the paper's encoder top. What a GPU runs."""
        return replace(cls(group="c8", n_hidden=64, heightmap_size=128, top="paper"), **overrides).validate()

    @classmethod
    def cpu(cls, **overrides) -> "NetworkConfig":
        """The configuration chosen for this 2-core CPU (docs/equivariant_sac.md, Networks)."""
        return replace(cls(), **overrides).validate()

    @classmethod
    def for_device(cls, device: str = "auto", **overrides) -> "NetworkConfig":
        """paper() on CUDA ('auto': when torch sees a GPU), cpu() otherwise."""
        if device == "auto":
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls.paper(**overrides) if str(device).startswith("cuda") else cls.cpu(**overrides)

    @property
    def widths(self) -> list[int]:
        """Fields (or channels for 'none', before the sqrt(8) factor) of the 7 encoder layers."""
        n = self.n_hidden
        return [n // 8, n // 4, n // 2, n, 2 * n, n, n]

    def validate(self) -> "NetworkConfig":
        G = sym.group(self.group)                     # ValueError listing the names
        if self.n_hidden < 8 or self.n_hidden % 8:
            raise ValueError(f"n_hidden must be a positive multiple of 8 (widths n/8 .. 2n), got {self.n_hidden}")
        if self.top not in TOPS:
            raise ValueError(f"top must be one of {TOPS}, got {self.top!r}")
        target = 8 if self.top == "paper" else 4
        size = self.heightmap_size
        if size < target or size % target or (size // target) & (size // target - 1):
            sizes = ", ".join(str(target * 2 ** k) for k in range(6))
            raise ValueError(f"heightmap_size must be {target} times a power of two for top={self.top!r} "
                             f"({sizes}, ...), got {size}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.center_inputs and self.in_channels > len(INPUT_CENTRES):
            raise ValueError(f"center_inputs knows {len(INPUT_CENTRES)} input channels, got {self.in_channels}")
        if self.relaxed and not (G.is_finite and not G.is_trivial):
            raise ValueError(f"relaxed convolutions need a finite group (c4 c8 c16 d4 d8), not {self.group!r}")
        if self.relaxed_banks < 1 or self.relaxed_strength < 0:
            raise ValueError("relaxed_banks must be >= 1 and relaxed_strength >= 0")
        if self.so2_max_frequency < 1:
            raise ValueError(f"so2_max_frequency must be >= 1, got {self.so2_max_frequency}")
        if self.so2_nonlinearity not in SO2_NONLINEARITIES:
            raise ValueError(f"so2_nonlinearity must be one of {SO2_NONLINEARITIES}, got {self.so2_nonlinearity!r}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError("log_std_min must be below log_std_max")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown network settings {unknown} (written by a newer equimanip?)")
        return cls(**data).validate()


__all__ = ["NetworkConfig", "INPUT_CENTRES", "INPUT_SCALES"]
