"""Attack an image classifier and write a JSON robustness report (and an eps-sweep plot).

python training/evaluate_robustness.py --model out/wrn16-10-mixacm --dataset ../shared/datasets/cifar10 \
    --split test --attacks clean,fgsm,pgd-20,pgd-100,autoattack --eps 8/255 --n_examples 1000 --output report.json

The report goes to --output (default: report.json in the current folder). Only when --output is given is progress
saved after every batch in <output>.partial/: rerunning the identical command after an interruption resumes there
(finished batches are not re-attacked, their time is counted); the folder is removed once the report is written.
Without --output nothing is kept for resuming (and no stale progress folder is read).
Sharded: `torchrun --nproc_per_node N training/evaluate_robustness.py ...` (or `accelerate launch`) spreads the
batches over the processes (gloo on CPU, NCCL on GPUs; --device cpu forces CPU) and rank 0 writes the report, with
the same per-example records as one process.

--model is a model folder, a Hub id or a RobustBench zoo entry, robustbench:<dataset>/<threat_model>/<name> (e.g.
robustbench:cifar10/Linf/Gowal2020Uncovering_28_10_extra): RobustBench's own model, its checkpoint read from
--robustbench_model_dir (<dir>/<dataset>/<threat_model>/<name>.pt; downloaded when absent unless HF_HUB_OFFLINE=1).

Attacks: clean, fgsm, pgd-<steps>[x<restarts>], autoattack (standard) or autoattack:<a>+<b> (custom components),
corruptions (the 15 CIFAR-10-C corruptions at severities 1-5; no eps applies): read from --corruptions_dir, a folder in
the published CIFAR-10-C layout (<corruption>.npy, labels.npy), else generated with imagecorruptions (ImageNet-C
parameters: recorded as generated, not comparable with published CIFAR-10-C numbers).
Budgets are in pixel units ([0, 1] images): eps as a float (0.031) or a fraction (8/255). An empty --eps_sweep ("")
means no sweep. Invalid settings end with `error: <message>` (naming this script's flags) and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import torch

from mixacm_hf.cli import parse_args, renamed_flags
from mixacm_hf.hub import push_or_exit, read_card_folder, record_input_normalization, update_model_card
from mixacm_hf.robustness import (
    RobustnessReport,
    check_budget,
    check_eps,
    evaluate_robustness,
    parse_eps,
    plot_eps_sweep,
)
from mixacm_hf.robustness.attacks import NORMS, check_sweep_scale
from mixacm_hf.robustness.corruptions import CORRUPTIONS, check_corruptions_folder, imagecorruptions_version
from mixacm_hf.robustness.registry import check_attack_norms, parse_attack
from mixacm_hf.robustness.transfer import check_white_box_partner
from mixacm_hf.teachers import DEFAULT_MODEL_DIR, check_zoo_checkpoint, check_zoo_preprocessing, is_zoo_spec

DEFAULT_OUTPUT = Path("report.json")
EPS_OPTIONS = ("--eps", "--eps_sweep")  # their values may start with "-" ("-1/255"): refused later with a message
_NEGATIVE_VALUE = re.compile(r"^-[\d.]")
# The old spellings, accepted with a warning for one release (every flag is spelled with underscores, as in
# training/run_mixacm.py).
RENAMED = {
    **{f"--{name.replace('_', '-')}": f"--{name}" for name in (
        "model_revision", "trust_remote_code", "dataset_revision", "n_examples", "image_mean", "image_std",
        "batch_size", "eps_sweep", "update_card", "card_dataset_id", "push_to_hub", "hub_model_id",
    )},
    "--n": "--n_examples",
}  # fmt: skip
# The library's messages name the training script's flags (training/run_mixacm.py); shown here, they name this
# script's instead, or none where it has no such setting.
OWN_FLAGS = (
    (re.compile(r"\(--train_split[,/] ?--eval_split([,/] ?--validation_split)?\)"), "(--split)"),
    (re.compile(r"training/run_mixacm\.py: [^;]*; training/evaluate_robustness\.py: "), ""),  # this script's advice
    (re.compile(r", or pass --skip_bad_images true \(skip_bad_images=True\)[^.]*"), ""),
    (re.compile(r" or the --label_column"), ""),
    (re.compile(r" Pass `\w+=<name>` \(--\w+ on the command line\)\."), " Rename the column to one of those."),
    (re.compile(r", of a checkpoint file \(with its architecture\), or"), " or"),  # --model takes no checkpoint file
    (re.compile(r"(?<![-\w])corruptions_dir\b"), "--corruptions_dir"),
    (
        re.compile(r"^n_examples=(\d+)(.*): pass 1 <= n_examples <= (\d+), or None for all\."),
        r"--n_examples \1\2: pass at most \3, or leave --n_examples out for all.",  # the library's keyword argument
    ),
)


def _eps(text: str) -> float:
    try:
        return parse_eps(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _eps_list(text: str) -> list[float] | None:
    """Comma-separated budgets; "" (or only spaces) means no sweep."""
    return [_eps(e) for e in text.split(",")] if text.strip() else None


def own_flags(message: str) -> str:
    """A library error's message as this script shows it (`OWN_FLAGS`)."""
    for pattern, replacement in OWN_FLAGS:
        message = pattern.sub(replacement, message)
    return message


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer (use 1 or more)")
    return value


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--eps -1/255` as `--eps=-1/255`: argparse takes a value starting with "-" that is not a plain number for an
    option, so the user would get "expected one argument" instead of the evaluator's message on the budget."""
    joined, i = [], 0
    while i < len(argv):
        if argv[i] in EPS_OPTIONS and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", required=True,
                        help="model folder, Hub id or robustbench:<dataset>/<threat_model>/<name>")  # fmt: skip
    parser.add_argument("--model_revision", help="Hub revision of the model")
    parser.add_argument("--trust_remote_code", action="store_true", help="allow model code from the Hub repo")
    parser.add_argument("--robustbench_model_dir", default=DEFAULT_MODEL_DIR,
                        help="RobustBench's model folder, for --model robustbench:... (%(default)s)")  # fmt: skip
    parser.add_argument("--dataset", required=True, help="dataset folder or Hub id")
    parser.add_argument("--dataset_revision", help="Hub revision of the dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--attacks", default="clean,pgd-20", help="comma-separated attack names")
    parser.add_argument("--eps", type=_eps, default=8 / 255, help="budget: 8/255 or 0.0314")
    parser.add_argument("--norm", choices=NORMS, default="Linf", help="threat model (L1: AutoAttack only)")
    parser.add_argument("--n_examples", type=_positive_int,
                        help="evaluate the first N examples of the split (default: all)")  # fmt: skip
    parser.add_argument(
        "--image_mean",
        type=float,
        nargs=3,
        help="mean the model expects inputs normalised with, "
        "when it has no image processor saying it (0 0 0 with --image_std 1 1 1: raw pixels)",
    )
    parser.add_argument("--image_std", type=float, nargs=3, help="std matching --image_mean")
    parser.add_argument("--batch_size", type=_positive_int, default=128)
    parser.add_argument("--workers", type=_positive_int, default=1,
                        help="on CPU: attack batches on this many processes at once, sharing the torch threads (the "
                        "same batches and seeds as one process)")  # fmt: skip
    parser.add_argument("--image_size", type=_positive_int,
                        help="load the split's images at this size (default: their own size when the model's image "
                        "processor resizes, else the model's config.image_size, 32 without one)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--eps_sweep", type=_eps_list,
                        help='comma-separated budgets, e.g. 0,2/255,4/255,8/255,16/255 ("": no sweep)')  # fmt: skip
    parser.add_argument("--plot", type=Path, help="PNG for the eps sweep (default: the output path with .png)")
    parser.add_argument("--output", type=Path,
                        help=f"JSON report path (default: {DEFAULT_OUTPUT} in the current folder). Only when given, "
                        "progress is kept in <output>.partial/ for resuming an interrupted run")  # fmt: skip
    parser.add_argument("--corruptions_dir", type=Path,
                        help="with --attacks ...,corruptions: a folder of CIFAR-10-C files (<corruption>.npy, "
                        "labels.npy); without it the corruptions are generated with imagecorruptions")  # fmt: skip
    parser.add_argument("--update_card", action="store_true",
                        help="merge the results into the model card of --model (a local folder)")  # fmt: skip
    parser.add_argument("--card_dataset_id", help="Hub dataset id for the card, e.g. uoft-cs/cifar10 for a copy")
    parser.add_argument("--push_to_hub", action="store_true",
                        help="then upload the --model folder to the Hub in one commit")  # fmt: skip
    parser.add_argument("--hub_model_id", help="Hub repo for --push_to_hub (default: folder name)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    return parser


def init_distributed(device: str | None) -> str | None:
    """Join the process group a launcher (torchrun, accelerate launch) set up; the device this process uses."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return device
    on_gpu = device != "cpu" and torch.cuda.is_available()
    if on_gpu and device in (None, "cuda"):  # one GPU per process (NCCL's gathers use the current device)
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if on_gpu else "gloo")
    return device


def _evaluate(args: argparse.Namespace, device: str | None, partial: Path | None) -> RobustnessReport:
    return evaluate_robustness(
        args.model,
        args.dataset,
        attacks=args.attacks.split(","),
        eps=args.eps,
        norm=args.norm,
        n_examples=args.n_examples,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device,
        eps_sweep=args.eps_sweep,
        split=args.split,
        model_revision=args.model_revision,
        dataset_revision=args.dataset_revision,
        trust_remote_code=args.trust_remote_code,
        image_mean=args.image_mean,
        image_std=args.image_std,
        resume_dir=partial,
        image_size=args.image_size,
        robustbench_model_dir=args.robustbench_model_dir,
        workers=args.workers,
        corruptions_dir=args.corruptions_dir,
    )


def main(argv: list[str] | None = None) -> RobustnessReport:
    """Parse the command line, evaluate and write the report; invalid settings or inputs (ValueError, OSError such
    as a missing model or dataset) end the process with `error: <message>` and status 1, without a traceback."""
    parser = argument_parser()
    argv = renamed_flags(sys.argv[1:] if argv is None else list(argv), RENAMED)
    args = parse_args(parser, _attach_negative_values(argv))
    if (args.update_card or args.push_to_hub) and not Path(args.model).is_dir():
        parser.error("--update_card and --push_to_hub need --model to be a local model folder")
    try:
        check_arguments(args)
        return _run(args)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {own_flags(str(error))}")


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked before loading anything, in errors naming the flag.

    Raises:
        ValueError: --model is a file or an unknown or unloadable RobustBench entry, a file of its folder that
            --update_card cannot read, a budget outside the norm's range,
            an unknown attack, or only one of --image_mean/--image_std (or either, or --model_revision, with a
            RobustBench entry).
        FileNotFoundError: a RobustBench entry's checkpoint is absent and HF_HUB_OFFLINE is set.
    """
    if Path(args.model).is_file():
        raise ValueError(
            f"--model {args.model} is a file: give a model folder or Hub id (training/convert_teacher.py converts a "
            "checkpoint file into a model folder)."
        )
    check_budget(args.eps, args.norm, "--eps")
    for eps in args.eps_sweep or ():
        check_eps(eps, args.norm, "--eps_sweep")
    check_sweep_scale(args.eps_sweep, args.eps, args.norm, "--eps_sweep", "--eps")
    try:
        specs = [parse_attack(name) for name in args.attacks.split(",")]
        check_attack_norms(specs, args.norm)
        check_white_box_partner(specs)
    except ValueError as error:
        raise ValueError(f"--attacks: {error}") from error
    corrupting = [spec for spec in specs if spec.attack.role == "corruption"]
    if args.corruptions_dir is not None and not corrupting:
        raise ValueError("--corruptions_dir is given, but --attacks has no corruptions: add corruptions, or drop it.")
    if args.corruptions_dir is not None:
        names = list(dict.fromkeys(name for spec in corrupting for name in spec.corruptions or CORRUPTIONS))
        check_corruptions_folder(args.corruptions_dir, names, args.n_examples or 1, "--corruptions_dir")
    elif corrupting:
        imagecorruptions_version()
    if (args.image_mean is None) != (args.image_std is None):
        raise ValueError("Pass both --image_mean and --image_std, or neither.")
    if args.update_card:
        read_card_folder(args.model)  # a file the update would misread stops it now, not after the evaluation
    if args.update_card and args.image_mean is not None:  # recorded as the folder's processor (checked now)
        record_input_normalization(args.model, (args.image_mean, args.image_std), args.image_size, dry_run=True)
    if is_zoo_spec(args.model):
        if args.image_mean is not None or args.model_revision is not None:
            raise ValueError(
                f"--model {args.model} is RobustBench's model, taking [0, 1] pixels; its revision is its checkpoint's "
                "sha256: drop --image_mean/--image_std and --model_revision."
            )
        check_zoo_preprocessing(args.model, args.image_size)
        check_zoo_checkpoint(args.model, args.robustbench_model_dir)


def _run(args: argparse.Namespace) -> RobustnessReport:
    output = args.output or DEFAULT_OUTPUT
    partial = None if args.output is None else output.with_name(output.name + ".partial")
    device = init_distributed(args.device)
    try:
        report = _evaluate(args, device, partial)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return report
    print(report.summary())
    print(f"Wrote {report.save(output)}")
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)
    if report.eps_sweep is not None:
        print(f"Wrote {plot_eps_sweep(report, args.plot or output.with_suffix('.png'))}")
    if args.update_card:
        if args.image_mean is not None:
            path = record_input_normalization(args.model, (args.image_mean, args.image_std), args.image_size)
            if path is not None:
                print(
                    f"Wrote {path} (the evaluated input: --image_mean {args.image_mean} --image_std {args.image_std})"
                )
        update_model_card(args.model, report, dataset_id=args.card_dataset_id)
        print(f"Updated {Path(args.model) / 'README.md'}")
    if args.push_to_hub:
        repo_id = args.hub_model_id or Path(args.model).resolve().name
        print(f"Pushed {args.model} to {repo_id}: {push_or_exit(args.model, repo_id, args.private)}")
    return report


if __name__ == "__main__":
    main()
