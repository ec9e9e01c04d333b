"""WideResNet configuration (Zagoruyko & Komodakis, 2016; DeepMind variant of Gowal et al., 2020)."""

from __future__ import annotations

import re

from transformers import PretrainedConfig

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

_NAME_PATTERN = re.compile(r"^(?:(?P<variant>standard|dm)-)?wrn-(?P<depth>\d+)-(?P<width>\d+)$")


class WideResNetConfig(PretrainedConfig):
    r"""
    Configuration of a CIFAR-style WideResNet WRN-`depth`-`widen_factor`.

    Args:
        depth (`int`, defaults to 16): total depth; `(depth - 4)` must be divisible by 6 (blocks per group).
        widen_factor (`int`, defaults to 2): channel multiplier k (group widths 16k, 32k, 64k; stem 16).
        num_channels (`int`, defaults to 3): input channels.
        activation (`str`, defaults to `"relu"`): `"relu"` or `"swish"` (SiLU).
        dropout (`float`, defaults to 0.0): dropout between the two convolutions of each block.
        image_mean / image_std (`tuple[float, ...]`): normalisation applied *inside* the model to
            `pixel_values` in [0, 1]; use mean 0 and std 1 for models trained on raw pixels.
        variant (`str`, defaults to `"standard"`): `"standard"` (TRADES/Madry layout, padding 1) or `"dm"`
            (DeepMind layout of Gowal et al.: "SAME" padding done by hand before strided convolutions).
        image_size (`int`, defaults to 32): expected input resolution (used by the image processor).
    """

    model_type = "wide_resnet"

    def __init__(
        self,
        depth: int = 16,
        widen_factor: int = 2,
        num_channels: int = 3,
        activation: str = "relu",
        dropout: float = 0.0,
        image_mean: tuple[float, ...] | list[float] = CIFAR10_MEAN,
        image_std: tuple[float, ...] | list[float] = CIFAR10_STD,
        variant: str = "standard",
        image_size: int = 32,
        **kwargs,
    ):
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (e.g. 16, 28, 34), got {depth}.")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}.")
        if activation not in ("relu", "swish"):
            raise ValueError(f"activation must be 'relu' or 'swish', got {activation!r}.")
        if variant not in ("standard", "dm"):
            raise ValueError(f"variant must be 'standard' or 'dm', got {variant!r}.")
        if len(image_mean) != num_channels or len(image_std) != num_channels:
            raise ValueError(f"image_mean and image_std need {num_channels} values each (one per input channel).")
        self.depth = depth
        self.widen_factor = widen_factor
        self.num_channels = num_channels
        self.activation = activation
        self.dropout = dropout
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.variant = variant
        self.image_size = image_size
        super().__init__(**kwargs)

    @property
    def blocks_per_group(self) -> int:
        return (self.depth - 4) // 6

    @property
    def hidden_sizes(self) -> list[int]:
        """Channels of the stem and of each of the three groups."""
        return [16, 16 * self.widen_factor, 32 * self.widen_factor, 64 * self.widen_factor]

    @property
    def hidden_size(self) -> int:
        return self.hidden_sizes[-1]

    @staticmethod
    def is_name(name: str) -> bool:
        """Whether `name` is a WideResNet name understood by `from_name` (e.g. 'wrn-16-2')."""
        return _NAME_PATTERN.match(name.strip().lower()) is not None

    @classmethod
    def from_name(cls, name: str, **kwargs) -> WideResNetConfig:
        """Config from a name such as `"wrn-16-2"`, `"wrn-28-10"` or `"dm-wrn-28-10"` (Swish, DeepMind layout).

        Any `wrn-D-K` with D = 6n + 4 works; extra keyword arguments (e.g. `num_labels`) override fields.
        """
        match = _NAME_PATTERN.match(name.strip().lower())
        if match is None:
            raise ValueError(
                f"Unknown WideResNet name {name!r}: expected 'wrn-DEPTH-WIDTH' (e.g. 'wrn-16-2', 'wrn-28-10') "
                "or 'dm-wrn-DEPTH-WIDTH' for the DeepMind/Swish variant."
            )
        variant = match["variant"] or "standard"
        preset = {"depth": int(match["depth"]), "widen_factor": int(match["width"]), "variant": variant}
        if variant == "dm":
            preset["activation"] = "swish"
        return cls(**{**preset, **kwargs})
