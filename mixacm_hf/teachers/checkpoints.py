"""Reading foreign checkpoints safely: safetensors, or pickles with `torch.load(weights_only=True)` only; state-dict
discovery (raw, or under `state_dict` / `model_state_dict` / `model`), DataParallel prefixes, sha256 of a file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

StateDict = dict[str, torch.Tensor]
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Tensors of a checkpoint file: safetensors, or a pickle read with `weights_only=True`.

    Accepts a raw state dict or one nested under `state_dict`, `model_state_dict` or `model` (the `robustness`
    library), and strips DataParallel's `module.` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {str(path)!r} does not exist; pass the path of a .pt/.pth/.safetensors file."
        )
    if path.suffix == ".safetensors":
        try:
            return _strip_module_prefix(load_file(path))
        except SafetensorError as error:
            raise ValueError(unreadable_weights_message(path, error)) from error
    return _strip_module_prefix(_find_state_dict(load_pickle(path), str(path)))


def load_pickle(path: str | os.PathLike) -> object:
    """A torch pickle's contents, read with `torch.load(weights_only=True)` (tensors, containers, numbers, strings).

    Raises:
        ValueError: the file is truncated or corrupt, or holds other objects (the message says how to re-save it).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        operand = [line.strip() for line in str(error).splitlines() if line.startswith("Unsupported operand")]
        if operand:  # not a pickle opcode: bytes of no pickle at all (torch's advice to unpickle it does not apply)
            raise ValueError(unreadable_weights_message(path, pickle.UnpicklingError(operand[0]))) from error
        reason = " ".join(
            line.strip() for line in str(error).splitlines() if "WeightsUnpickler" in line or "Unsupp" in line
        )
        raise ValueError(
            f"Refusing to read {str(path)!r}: it is not a plain tensor checkpoint ({reason or 'unreadable'}). This "
            "project reads pickles only with `torch.load(weights_only=True)`, since unpickling arbitrary objects can "
            "run code. If you trust the file, re-save just its weights once, e.g. `torch.save(torch.load(path, "
            "weights_only=False)['state_dict'], 'weights.pt')` (or as safetensors), and pass that file instead."
        ) from error
    except Exception as error:  # truncated or not a torch file: EOFError, RuntimeError, KeyError, ...
        raise ValueError(unreadable_weights_message(path, error)) from error
    return checkpoint


def unreadable_weights_message(path: str | os.PathLike, error: BaseException) -> str:
    """The error message for a weights file at `path` that failed to read with `error`."""
    return (
        f"Cannot read the weights in {str(path)!r} ({type(error).__name__}: {error}): the file is truncated or "
        "corrupt. Download or copy it again (or re-save the model) and retry."
    )


def _find_state_dict(checkpoint: object, name: str) -> StateDict:
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"{name!r} holds no state dict; expected a dict of tensors (or one under {STATE_DICT_KEYS}).")
    not_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{name!r} is not a state dict: entries {not_tensors[:5]} are not tensors. Expected a dict of tensors, "
            f"raw or under one of {STATE_DICT_KEYS}; re-save the model's `state_dict()` alone."
        )
    return dict(checkpoint)


def _strip_module_prefix(state_dict: StateDict) -> StateDict:
    return {key.removeprefix("module."): value for key, value in state_dict.items()}
