"""Teachers for MixACM: load any robust image classifier as a frozen module with the project's input/output contract.

`load_teacher(spec)` returns an `nn.Module` in eval mode with gradients off that takes `pixel_values` in [0, 1]
(B, 3, H, W) and, called with `output_hidden_states=True`, returns an object with `.logits` and `.hidden_states`: a
tuple of (B, C, H, W) feature maps (stem, then one per stage). Accepted specs:

- a Hugging Face model folder or Hub id (`AutoModelForImageClassification`: this project's WideResNets, HF ResNet /
  ConvNeXt, timm models through `TimmWrapperForImageClassification`);
- a foreign checkpoint file plus `architecture` (see `ARCHITECTURES`): RobustBench / TRADES / Madry "Standard"
  WideResNets, DeepMind WideResNets (`DMWideResNet`, Swish), `robustness`-library ImageNet ResNet-50s, timm models.

Models that normalise outside (HF ResNet, timm, ...) are wrapped in `PixelSpaceClassifier`, which applies their
mean/std (from `image_mean`/`image_std`, the saved image processor, or timm's `pretrained_cfg`) inside the forward,
so attacks and mixup stay in pixel space. Foreign checkpoints are read with `torch.load(..., weights_only=True)` only.

Hidden states: WideResNets give stem + 3 groups; HF ResNet and timm ResNets stem + 4 stages; timm ConvNeXt 4 stages.
When teacher and student counts differ, pair them with `acm_teacher_layers` / `acm_student_layers` (e.g. ResNet-50
teacher 0,2,3,4 with WRN student 0,1,2,3) or `acm_layer_mapping="relative_depth"` (see `mixacm_hf.losses`).
"""

from .card import converted_model_card, save_converted_teacher
from .checkpoints import STATE_DICT_KEYS, StateDict, file_sha256, read_checkpoint
from .converters import (
    ARCHITECTURES,
    CIFAR10_NORMALIZATION,
    CIFAR100_NORMALIZATION,
    RAW_PIXELS,
    Architecture,
    Normalization,
    RenameRule,
    convert_checkpoint,
    convert_dm_wrn,
    convert_robustness_resnet50,
    convert_standard_wrn,
    convert_state_dict,
    convert_timm,
    load_converted,
    rename_keys,
    resolve_architecture,
    supported_architectures,
)
from .loading import (
    DEFAULT_PROBE_SIZE,
    PixelSpaceClassifier,
    as_pixel_space,
    check_teacher,
    input_normalization,
    load_pretrained_classifier,
    load_teacher,
    normalizes_inside,
)

__all__ = [
    "ARCHITECTURES",
    "CIFAR10_NORMALIZATION",
    "CIFAR100_NORMALIZATION",
    "DEFAULT_PROBE_SIZE",
    "RAW_PIXELS",
    "STATE_DICT_KEYS",
    "Architecture",
    "Normalization",
    "PixelSpaceClassifier",
    "RenameRule",
    "StateDict",
    "as_pixel_space",
    "check_teacher",
    "convert_checkpoint",
    "convert_dm_wrn",
    "convert_robustness_resnet50",
    "convert_standard_wrn",
    "convert_state_dict",
    "convert_timm",
    "converted_model_card",
    "file_sha256",
    "input_normalization",
    "normalizes_inside",
    "load_converted",
    "load_pretrained_classifier",
    "load_teacher",
    "read_checkpoint",
    "rename_keys",
    "resolve_architecture",
    "save_converted_teacher",
    "supported_architectures",
]
