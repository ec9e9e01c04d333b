"""Pushing a saved robust model to the Hub (safetensors, code, configs, card; never checkpoints or pickles) and
reading a card from a folder, a README.md or a Hub id."""

from __future__ import annotations

import shlex
from pathlib import Path

from huggingface_hub import HfApi, ModelCard

from .results import CARD_NAME

# safetensors weights only; no checkpoints, logs, or the lock/temporary files of mixacm_hf.files
HUB_IGNORE = ["checkpoint-*", "runs/*", ".*.lock", ".*.tmp", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]


class HubPushError(RuntimeError):
    """A push to the Hub failed. The local folder is untouched; the message says why and how to retry."""


def push_robust_model(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    *,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the Hub repo `repo_id` if needed and upload `folder` in one commit; returns the commit URL.

    Checkpoints, pickles (`*.bin`, `*.pt`, ...) and TensorBoard runs stay local: the Hub gets safetensors weights,
    model code, configs, the card, `.eval_results/`, its plot, robustness.json and per_example.parquet. Any failure
    (offline mode, network, login, permissions) raises `HubPushError` with the cause and the command that retries the
    push; the folder is untouched.
    """
    folder = Path(folder)
    if not (folder / CARD_NAME).is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} is not a saved robust model (README.md and *.safetensors expected).")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload {folder.resolve().name} with its robustness model card",
            ignore_patterns=HUB_IGNORE,
        )
    except Exception as error:  # offline, network, auth, permissions...: one error that says how to retry
        retry = ["python", "-m", "mixacm_hf.hub", "push", str(folder), repo_id]
        retry += (["--private"] if private else []) + (["--endpoint", endpoint] if endpoint else [])
        raise HubPushError(
            f"Could not push {folder} to the Hub repo {repo_id}: {type(error).__name__}: {error}\n"
            f"Nothing was lost: the local folder {folder.resolve()} is intact.\n"
            "Check the network, that HF_HUB_OFFLINE is unset and that you are logged in with write access "
            f"(`hf auth login` or HF_TOKEN), then retry with:\n  {shlex.join(retry)}"
        ) from error
    return commit.commit_url


def push_or_exit(
    folder: str | Path, repo_id: str, private: bool = False, token: str | None = None, *, endpoint: str | None = None
) -> str:
    """`push_robust_model` for command-line scripts: on failure, the error goes to stderr and the exit status is 1."""
    try:
        return push_robust_model(folder, repo_id, private, token, endpoint=endpoint)
    except HubPushError as error:
        raise SystemExit(f"error: {error}") from None


def load_card(source: str | Path) -> ModelCard:
    """The card of a model folder, a README.md file or a Hub model id (`FileNotFoundError` when there is none)."""
    path = Path(source)
    path = path / CARD_NAME if path.is_dir() else path
    try:
        return ModelCard.load(path if path.is_file() else str(source))
    except (OSError, ValueError) as error:  # not found locally, invalid id, Hub unreachable or offline
        raise FileNotFoundError(f"No model card for {source} (a model folder, README.md or Hub id): {error}") from error
