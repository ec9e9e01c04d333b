"""Teachers for MixACM: load any robust image classifier as a frozen module with the project's input/output contract.

`load_teacher(spec)` returns an `nn.Module` in eval mode with gradients off that takes `pixel_values` in [0, 1]
(B, 3, H, W) and, called with `output_hidden_states=True`, returns an object with `.logits` and `.hidden_states`: a
tuple of (B, C, H, W) feature maps (stem, then one per stage). Accepted specs:

- a Hugging Face model folder or Hub id (`AutoModelForImageClassification`: this project's WideResNets, HF ResNet /
  ConvNeXt, timm models through `TimmWrapperForImageClassification`);
- a foreign checkpoint file plus `architecture` (see `ARCHITECTURES`): RobustBench / TRADES / Madry "Standard"
  WideResNets, DeepMind WideResNets (`DMWideResNet`, Swish), `robustness`-library ImageNet ResNet-50s, timm models;
- a RobustBench zoo entry by name, `robustbench:<dataset>/<threat_model>/<name>` (`zoo`): built by RobustBench's
  own code from its model directory's checkpoint; a plain module whose stage outputs are taken by forward hooks
  (`HookedClassifier`; `stage_modules`, else `default_stage_modules`' probe).

Models that normalise outside (HF ResNet, timm, ...) are wrapped in `PixelSpaceClassifier`, which applies their
mean/std (from `image_mean`/`image_std`, the saved image processor, or timm's `pretrained_cfg`) inside the forward,
so attacks and mixup stay in pixel space. Foreign checkpoints are read with `torch.load(..., weights_only=True)` only.

Hidden states: WideResNets give stem + 3 groups; HF ResNet and timm ResNets stem + 4 stages; timm ConvNeXt 4
stages; zoo models the probe's stages (a RobustBench WideResNet: groups 1 and 2 and the final BN-ReLU after group 3;
a (PreAct)ResNet-18: its 4 stages).
When teacher and student counts differ, pair them with `acm_teacher_layers` / `acm_student_layers` (e.g. ResNet-50
teacher 0,2,3,4 with WRN student 0,1,2,3) or `acm_layer_mapping="relative_depth"` (see `mixacm_hf.losses`).
"""

from ..files import file_sha256
from .card import converted_model_card, save_converted_teacher
from .checkpoints import STATE_DICT_KEYS, StateDict, load_pickle, read_checkpoint
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
    image_processor_of,
    input_normalization,
    load_pretrained_classifier,
    load_teacher,
    normalizes_inside,
    teacher_provenance,
)
from .preprocessing import PixelSteps, pixel_steps
from .stages import HookedClassifier, default_stage_modules
from .zoo import (
    DEFAULT_MODEL_DIR,
    ZOO_PREFIX,
    ZooEntry,
    build_zoo_model,
    check_zoo_checkpoint,
    check_zoo_preprocessing,
    is_zoo_spec,
    load_zoo_classifier,
    resolve_zoo_entry,
    robustbench_module,
    zoo_model_info,
    zoo_state_dict,
)

__all__ = [
    "ARCHITECTURES",
    "CIFAR10_NORMALIZATION",
    "CIFAR100_NORMALIZATION",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_PROBE_SIZE",
    "RAW_PIXELS",
    "STATE_DICT_KEYS",
    "Architecture",
    "HookedClassifier",
    "Normalization",
    "PixelSpaceClassifier",
    "PixelSteps",
    "RenameRule",
    "StateDict",
    "ZOO_PREFIX",
    "ZooEntry",
    "build_zoo_model",
    "check_zoo_checkpoint",
    "check_zoo_preprocessing",
    "default_stage_modules",
    "is_zoo_spec",
    "load_pickle",
    "load_zoo_classifier",
    "resolve_zoo_entry",
    "robustbench_module",
    "zoo_model_info",
    "zoo_state_dict",
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
    "image_processor_of",
    "input_normalization",
    "normalizes_inside",
    "load_converted",
    "load_pretrained_classifier",
    "load_teacher",
    "pixel_steps",
    "read_checkpoint",
    "rename_keys",
    "resolve_architecture",
    "save_converted_teacher",
    "supported_architectures",
    "teacher_provenance",
]
