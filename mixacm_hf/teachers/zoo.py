"""RobustBench's model zoo by name: `robustbench:<dataset>/<threat_model>/<name>` (e.g.
`robustbench:cifar10/Linf/Gowal2020Uncovering_28_10_extra`).

The architecture is built by RobustBench's own zoo code (`robustbench.model_zoo.model_dicts`: each entry's `model`
builder); the checkpoint is read from RobustBench's model directory layout, `<model_dir>/<dataset>/<threat_model>/
<name>.pt` (default `./models`, as RobustBench's), downloaded with RobustBench's own downloader only when absent and
online (`HF_HUB_OFFLINE` unset), read with `torch.load(weights_only=True)` and keyed as `robustbench.utils.load_model`
keys it. Zoo models take pixels in [0, 1] and normalise inside where they need to (RobustBench's convention), so
nothing is added in front of them; their stage outputs come from forward hooks (`stages.HookedClassifier`).

RobustBench is installed with `--no-deps` (its pins would downgrade timm), with its other imports from the
`robustbench` extra (geotorch, torchdiffeq, gdown, setuptools < 82 for `pkg_resources`); it imports the git
AutoAttack's module name `autoattack`, which PyPI's `pyautoattack` provides under its own name: `robustbench_module`
lends it that name when no `autoattack` is installed.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import timm
import torch
from huggingface_hub import constants
from torch import nn
from transformers import PretrainedConfig

from ..files import file_sha256
from .checkpoints import StateDict, load_pickle
from .stages import RAW_INPUT, HookedClassifier

ZOO_PREFIX = "robustbench:"
DEFAULT_MODEL_DIR = "./models"  # robustbench.utils.load_model's default
IMAGE_SIZES = {"cifar10": 32, "cifar100": 32, "imagenet": 224}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}  # robustbench.utils.DATASET_CLASSES
ZOO_INPUT = f"{RAW_INPUT} (RobustBench zoo model: it normalises inside where it needs to, as RobustBench evaluates it)"
# As robustbench.utils.load_model (1.1.1): checkpoints saved under `last`, and the ImageNet entries whose checkpoint
# keys are not prefixed with `model.` (the others' weights sit behind its normaliser) or need timm's Swin key filter.
LAST_CHECKPOINT = ("Kireev2021Effectiveness", "Andriushchenko2020Understanding")
IMAGENET_UNPREFIXED = (
    "Singh2023Revisiting_ConvNeXt-T-ConvStem", "Singh2023Revisiting_ViT-B-ConvStem",
    "Singh2023Revisiting_ConvNeXt-S-ConvStem", "Singh2023Revisiting_ConvNeXt-B-ConvStem",
    "Singh2023Revisiting_ConvNeXt-L-ConvStem", "Peng2023Robust", "Chen2024Data_WRN_50_2", "Xu2024MIMIR_Swin-B",
    "Xu2024MIMIR_Swin-L",
)  # fmt: skip
# RobustBench's preprocessing of each entry's test images (robustbench.data.PREPROCESSINGS) that the evaluator's own
# pipeline reproduces, per dataset, with the image size it loads at: ToTensor (CIFAR, at 32 px) and, for ImageNet at
# 224 px, a bilinear resize of the short side to 256 and a center crop of 224 (`data.images.image_transform`).
EVALUATOR_PREPROCESSING = {"cifar10": (None, 32), "cifar100": (None, 32), "imagenet": ("Res256Crop224", 224)}
IMAGENET_SWIN = (
    "Liu2023Comprehensive_Swin-B", "Liu2023Comprehensive_Swin-L", "Mo2022When_Swin-B",
    "RodriguezMunoz2024Characterizing_Swin-B", "RodriguezMunoz2024Characterizing_Swin-L",
)  # fmt: skip


def is_zoo_spec(spec: object) -> bool:
    """Whether `spec` names a RobustBench zoo entry (`robustbench:...`)."""
    return isinstance(spec, str) and spec.startswith(ZOO_PREFIX)


@dataclass(frozen=True)
class ZooEntry:
    """One RobustBench zoo entry: dataset, threat model and name, as RobustBench spells them."""

    dataset: str
    threat_model: str
    name: str

    @property
    def spec(self) -> str:
        return f"{ZOO_PREFIX}{self.dataset}/{self.threat_model}/{self.name}"

    def checkpoint(self, model_dir: str | os.PathLike | None = None) -> Path:
        """Where RobustBench keeps its checkpoint."""
        return Path(model_dir or DEFAULT_MODEL_DIR) / self.dataset / self.threat_model / f"{self.name}.pt"


def robustbench_module(name: str = "robustbench") -> ModuleType:
    """Import RobustBench (or one of its modules) as installed, lending it PyPI's AutoAttack under the git package's
    module name `autoattack` when that is not installed, and quieting its imports' deprecation warnings.

    Raises:
        ImportError: RobustBench or one of its dependencies is missing; the message says how to install them.
    """
    if importlib.util.find_spec("autoattack") is None and importlib.util.find_spec("pyautoattack") is not None:
        sys.modules.setdefault("autoattack", importlib.import_module("pyautoattack"))
        sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm.models.layers, pkg_resources: notices about its own imports
            return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"RobustBench's model zoo cannot be imported ({error}). Install it as this project's CI does: pip install "
            "-e '.[robustbench]' && pip install --no-deps robustbench."
        ) from error


def _zoo() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """{(dataset, threat model): {name: entry}} from `robustbench.model_zoo.model_dicts`."""
    model_dicts = robustbench_module("robustbench.model_zoo").model_dicts
    return {(d.value, t.value): models for d, threats in model_dicts.items() for t, models in threats.items()}


def resolve_zoo_entry(spec: str) -> tuple[ZooEntry, dict[str, Any]]:
    """The entry `spec` names and RobustBench's model dict entry (its `model` builder, `gdrive_id`).

    Raises:
        ValueError: a malformed spec or an unknown name (naming the closest zoo entries), or an entry this project
            cannot load from RobustBench's model directory: ensembles, and entries whose weights RobustBench takes
            elsewhere (timm's or torchvision's pretrained downloads).
    """
    parts = spec.removeprefix(ZOO_PREFIX).split("/")
    if not is_zoo_spec(spec) or len(parts) != 3 or not all(parts):
        raise ValueError(
            f"{spec!r} is not a RobustBench zoo spec: write robustbench:<dataset>/<threat_model>/<name>, e.g. "
            "robustbench:cifar10/Linf/Gowal2020Uncovering_28_10_extra."
        )
    zoo = _zoo()
    keys = {(d.lower(), t.lower()): (d, t) for d, t in zoo}
    dataset, threat_model = keys.get((parts[0].lower(), parts[1].lower()), (parts[0], parts[1]))
    models = zoo.get((dataset, threat_model), {})
    if parts[2] not in models:
        known = [ZooEntry(d, t, name).spec for (d, t), entries in zoo.items() for name in entries]
        asked = ZooEntry(dataset, threat_model, parts[2]).spec
        close = difflib.get_close_matches(asked, known, n=5, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else f"datasets/threat models: {', '.join(map('/'.join, zoo))}"
        raise ValueError(f"RobustBench's model zoo has no {asked!r} ({hint}).")
    entry, found = ZooEntry(dataset, threat_model, parts[2]), models[parts[2]]
    timm_name = f"{entry.name.lower().replace('-', '_')}_{dataset}_{threat_model.lower()}"
    gdrive_id = found.get("gdrive_id")
    if isinstance(gdrive_id, list):
        reason = f"an ensemble of {len(gdrive_id)} checkpoints"
    elif gdrive_id is None or timm.is_model(timm_name):
        reason = "built with timm's pretrained weights, which timm downloads itself"
    elif dataset == "imagenet" and "Standard" in entry.name:
        reason = "built with torchvision's pretrained weights, which torchvision downloads itself"
    else:
        return entry, found
    raise ValueError(
        f"{entry.spec} is {reason}, not one checkpoint in RobustBench's model directory: this project loads only "
        "single-checkpoint zoo entries."
    )


def check_zoo_preprocessing(spec: str, image_size: int | None = None) -> None:
    """Check that the evaluator's pipeline, loading a dataset at `image_size` (None: the entry's own, 32 or 224),
    gives the inputs RobustBench evaluates the entry on (its `preprocessing`).

    Raises:
        ValueError: RobustBench preprocesses the entry otherwise (e.g. `BicubicRes256Crop224`, `Res224`, `Crop288`
            ImageNet entries), or `image_size` is another size; the message names both.
    """
    entry, found = resolve_zoo_entry(spec)
    preprocessing, size = EVALUATOR_PREPROCESSING[entry.dataset]
    wanted = found.get("preprocessing")
    if wanted == preprocessing and image_size in (None, size):
        return
    raise ValueError(
        f"RobustBench evaluates {entry.spec} on images preprocessed as {wanted or 'ToTensor'!r} "
        f"(robustbench.data.PREPROCESSINGS); the evaluator's pipeline at image size {image_size or size} gives "
        f"{preprocessing or 'ToTensor'!r} only at size {size}: refusing rather than reporting the accuracy of other "
        "inputs than RobustBench's. Evaluate it on images preprocessed as RobustBench does, passed as tensors (from "
        "Python: evaluate_robustness(model, (pixel_values, labels)))."
    )


def _expected_checkpoint(entry: ZooEntry, model_dir: str | os.PathLike | None) -> Path:
    path = entry.checkpoint(model_dir)
    if not path.is_file() and constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{entry.spec}: its checkpoint is not at {str(path)!r}, where RobustBench expects it "
            "(<model_dir>/<dataset>/<threat_model>/<name>.pt), and HF_HUB_OFFLINE is set, so it is not downloaded. "
            "Put the file there, point --robustbench_model_dir at the folder that holds "
            f"{entry.dataset}/{entry.threat_model}/{path.name}, or run online."
        )
    return path


def check_zoo_checkpoint(spec: str, model_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint path of a zoo spec, after checking the entry and that the file is there or can be downloaded
    (online): what the scripts check before any work.

    Raises:
        ValueError: see `resolve_zoo_entry`.
        FileNotFoundError: the checkpoint is absent and `HF_HUB_OFFLINE` is set; the message names the path
            RobustBench expects.
    """
    return _expected_checkpoint(resolve_zoo_entry(spec)[0], model_dir)


def zoo_state_dict(checkpoint: object, entry: ZooEntry, model: nn.Module) -> StateDict:
    """The state dict `robustbench.utils.load_model` loads into `model` from a checkpoint's contents: `last` for the
    entries saved so, `state_dict` when present, `module.` and `model.` removed; for ImageNet timm's Swin key filter
    where RobustBench applies it and `model.` put back in front (the weights sit behind RobustBench's normaliser)."""
    utils = robustbench_module("robustbench.utils")
    if isinstance(checkpoint, dict) and any(entry.name.startswith(name) for name in LAST_CHECKPOINT):
        checkpoint = checkpoint.get("last", checkpoint)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{entry.spec}: its checkpoint holds no state dict of tensors (raw or under 'state_dict').")
    not_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{entry.spec}: its checkpoint is not a state dict of tensors (raw or under 'state_dict'): entries "
            f"{not_tensors[:5]} are not tensors."
        )
    state_dict = utils.rm_substr_from_state_dict(utils.rm_substr_from_state_dict(checkpoint, "module."), "model.")
    if entry.dataset == "imagenet" and entry.name in IMAGENET_SWIN:
        swin = importlib.import_module("timm.models.swin_transformer")
        state_dict = swin.checkpoint_filter_fn(state_dict, model.model)
    if entry.dataset == "imagenet" and entry.name not in IMAGENET_UNPREFIXED:
        state_dict = utils.add_substr_to_state_dict(state_dict, "model.")
    return dict(state_dict)


def zoo_model_info(entry: ZooEntry, root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """RobustBench's model information for an entry (name, link, authors, clean_acc, autoattack_acc, ...) from
    `<root>/<dataset>/<threat_model>/<name>.json` (default root: the installed package's `model_info` folder, which
    RobustBench's repository has and its PyPI package 1.1.1 lacks), or None where there is none."""
    root = Path(root) if root is not None else Path(robustbench_module().__file__).parent / "model_info"
    path = root / entry.dataset / entry.threat_model / f"{entry.name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def build_zoo_model(spec: str, model_dir: str | os.PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """RobustBench's model for `spec` with its checkpoint's weights (eval mode) and its provenance: the entry, the
    checkpoint's path and sha256, RobustBench's version and builder class, its download id and model information.

    Raises:
        ValueError, FileNotFoundError: see `check_zoo_checkpoint`; RobustBench cannot build the entry here, or the
            checkpoint does not fit it.
    """
    entry, found = resolve_zoo_entry(spec)
    utils = robustbench_module("robustbench.utils")
    path = _expected_checkpoint(entry, model_dir)
    if not path.is_file():  # online: RobustBench's own download
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            utils.download_gdrive_new(found["gdrive_id"], path)
            failure = None if path.is_file() else "no file came"
        except Exception as error:  # no network, a quota, a moved file: gdown's and requests' own errors
            failure = f"{type(error).__name__}: {error}"
        if failure:
            path.unlink(missing_ok=True)  # a partial download would read as the checkpoint next time
            raise FileNotFoundError(
                f"{entry.spec}: downloading its checkpoint (Google Drive id {found['gdrive_id']}) to {str(path)!r} "
                f"failed ({failure}). Put the file there (RobustBench's <model_dir>/<dataset>/<threat_model>/"
                "<name>.pt), or point --robustbench_model_dir at the folder that holds "
                f"{entry.dataset}/{entry.threat_model}/{path.name}."
            )
    checkpoint = load_pickle(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = found["model"]()
    except Exception as error:  # its builders import optional packages, call timm, ...: say which entry failed
        raise ValueError(f"RobustBench cannot build {entry.spec} here: {type(error).__name__}: {error}") from error
    state_dict = zoo_state_dict(checkpoint, entry, model)
    dataset = robustbench_module("robustbench.model_zoo.enums").BenchmarkDataset(entry.dataset)
    try:  # RobustBench's strict load, lenient for the entries and messages it knows to be harmless
        model = utils._safe_load_state_dict(model, entry.name, state_dict, dataset)
    except RuntimeError as error:
        raise ValueError(f"The checkpoint {str(path)!r} does not fit {entry.spec}: {error}") from error
    provenance = {
        "zoo": "robustbench", "spec": entry.spec, "dataset": entry.dataset, "threat_model": entry.threat_model,
        "name": entry.name, "checkpoint": str(path), "sha256": file_sha256(path),
        "gdrive_id": found.get("gdrive_id"), "preprocessing": found.get("preprocessing"),
        "robustbench_version": version("robustbench"),
        "builder": f"{type(model).__module__}.{type(model).__qualname__}", "model_info": zoo_model_info(entry),
    }  # fmt: skip
    return model.eval(), provenance


def load_zoo_classifier(
    spec: str, model_dir: str | os.PathLike | None = None, stage_modules: list[str] | None = None
) -> HookedClassifier:
    """A zoo entry with the teacher contract: pixels in [0, 1] in (nothing added in front: RobustBench's models
    normalise inside), `.logits`, and `.hidden_states` from forward hooks on `stage_modules` (default: found by a
    probe, `stages.default_stage_modules`). Its `provenance` is `build_zoo_model`'s; its `config` has the class
    count and the dataset's image size (32, or 224 for ImageNet, whose images RobustBench resizes to 256 and
    center-crops to 224 before the model)."""
    model, provenance = build_zoo_model(spec, model_dir)
    dataset = provenance["dataset"]
    config = PretrainedConfig(num_labels=NUM_CLASSES[dataset], image_size=IMAGE_SIZES[dataset])
    return HookedClassifier(model, stage_modules, config=config, input_convention=ZOO_INPUT, provenance=provenance)
