"""PyTorch WideResNet for CIFAR-style images, with normalisation inside the model (pixel_values in [0, 1]).

Self-contained (imports only torch, transformers and its configuration) so that `save_pretrained` can copy it
into a model folder for `trust_remote_code=True` loading.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, ViTImageProcessor
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

from .configuration_wide_resnet import WideResNetConfig


def _activation(name: str) -> nn.Module:
    return nn.SiLU() if name == "swish" else nn.ReLU()


class WideResNetNormalization(nn.Module):
    """(x - mean) / std with per-channel statistics from the config, stored as buffers."""

    def __init__(self, config: WideResNetConfig):
        super().__init__()
        self.register_buffer("mean", torch.tensor(config.image_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.image_std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return (pixel_values - self.mean.to(pixel_values.dtype)) / self.std.to(pixel_values.dtype)


class WideResNetBlock(nn.Module):
    """Pre-activation basic block: BN-act-conv3x3-BN-act-(dropout)-conv3x3 plus identity or 1x1 shortcut."""

    def __init__(self, config: WideResNetConfig, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.same_padding = config.variant == "dm"
        self.stride = stride
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = _activation(config.activation)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=0 if self.same_padding else 1, bias=False
        )
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.act2 = _activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if in_channels != out_channels else None
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        activated = self.act1(self.norm1(hidden_state))
        residual = hidden_state if self.shortcut is None else self.shortcut(activated)
        if self.same_padding:  # TensorFlow "SAME" padding, as in DeepMind's checkpoints
            activated = F.pad(activated, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))
        out = self.act2(self.norm2(self.conv1(activated)))
        out = self.conv2(self.dropout(out))
        return residual + out


class WideResNetGroup(nn.Module):
    """A stage of `blocks_per_group` blocks; the first one may change width and stride."""

    def __init__(self, config: WideResNetConfig, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            *[
                WideResNetBlock(config, in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1)
                for i in range(config.blocks_per_group)
            ]
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_state)


def image_processor_for(config: WideResNetConfig) -> ViTImageProcessor:
    """Processor that only resizes and rescales to [0, 1]: normalisation happens inside the model."""
    size = config.image_size
    return ViTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=False,
    )


class WideResNetPreTrainedModel(PreTrainedModel):
    config: WideResNetConfig
    config_class = WideResNetConfig
    base_model_prefix = "wide_resnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["WideResNetBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                init.uniform_(module.bias, -(module.in_features**-0.5), module.in_features**-0.5)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, WideResNetNormalization):
            init.copy_(module.mean, torch.tensor(self.config.image_mean).view_as(module.mean))
            init.copy_(module.std, torch.tensor(self.config.image_std).view_as(module.std))

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, plus the image-processor config (for `pipeline`) and, when the
        class is registered for auto classes, an `AutoModel` entry so `AutoModel.from_pretrained` gets the backbone."""
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.WideResNetModel",
            }
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            image_processor_for(self.config).save_pretrained(save_directory)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) in [0, 1], "
                f"got {tuple(pixel_values.shape)}. Resize the images to {expected[1]}x{expected[2]} (the saved image "
                "processor does this) or set `config.image_size` for models meant for another resolution."
            )


class WideResNetModel(WideResNetPreTrainedModel):
    """WideResNet backbone: normalisation, stem conv, three groups, final BN + activation and global average pooling.

    `hidden_states` (with `output_hidden_states=True`) = (stem, group1, group2, group3), each (B, C, H, W).
    """

    def __init__(self, config: WideResNetConfig):
        super().__init__(config)
        widths = config.hidden_sizes
        self.normalization = WideResNetNormalization(config)
        self.stem = nn.Conv2d(config.num_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.groups = nn.ModuleList(
            [WideResNetGroup(config, widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(3)]
        )
        self.norm = nn.BatchNorm2d(widths[-1])
        self.act = _activation(config.activation)
        self.pooler = nn.AdaptiveAvgPool2d(1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple:
        """pixel_values (B, C, H, W) in [0, 1] -> last_hidden_state (B, 64k, H/4, W/4), pooler_output (B, 64k)."""
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_state = self.stem(self.normalization(pixel_values))
        hidden_states = [hidden_state]
        for group in self.groups:
            hidden_state = group(hidden_state)
            hidden_states.append(hidden_state)
        last_hidden_state = self.act(self.norm(hidden_state))
        pooled = self.pooler(last_hidden_state).flatten(1)
        all_hidden_states = tuple(hidden_states) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled, all_hidden_states) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last_hidden_state, pooler_output=pooled, hidden_states=all_hidden_states
        )


class WideResNetForImageClassification(WideResNetPreTrainedModel):
    """WideResNet backbone + linear classifier. Labels: class indices (B,) or soft targets (B, num_labels)."""

    def __init__(self, config: WideResNetConfig):
        super().__init__(config)
        self.wide_resnet = WideResNetModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutputWithNoAttention | tuple:
        """pixel_values (B, C, H, W) in [0, 1] -> logits (B, num_labels); cross-entropy loss when labels given."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.wide_resnet(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        if not return_dict:
            return tuple(v for v in (loss, logits, outputs.hidden_states) if v is not None)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = ["WideResNetModel", "WideResNetForImageClassification", "WideResNetPreTrainedModel"]
