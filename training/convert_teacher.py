"""Convert a foreign robust checkpoint into a Hugging Face model folder usable as a MixACM teacher.

python training/convert_teacher.py Carmon2019Unlabeled.pt --arch standard-wrn-28-10 --output teachers/carmon2019 \\
    --source "RobustBench cifar10 Linf Carmon2019Unlabeled" --reported_robustness "AutoAttack NN.NN% (Linf 8/255)"

Architectures: standard-wrn-D-K, dm-wrn-D-K, robustness-resnet50, timm:NAME (see `mixacm_hf.teachers.ARCHITECTURES`).
The checkpoint is read with `torch.load(weights_only=True)`; the folder holds safetensors, config, image processor
and a model card with the provenance.

A RobustBench zoo entry converts by name, without --arch (its checkpoint is read from --robustbench_model_dir):

python training/convert_teacher.py robustbench:cifar10/Linf/Carmon2019Unlabeled --output teachers/carmon2019

This works for entries built as RobustBench's WideResNet or DMWideResNet whose converted logits equal RobustBench's
(most CIFAR entries); the others are refused with the reason: use them by name (training/run_mixacm.py's teacher,
training/evaluate_robustness.py's model), which loads RobustBench's own model.
"""

import argparse
import sys

from mixacm_hf.cli import parse_args, renamed_flags
from mixacm_hf.teachers import ARCHITECTURES, DEFAULT_MODEL_DIR, is_zoo_spec, save_converted_teacher
from mixacm_hf.teachers.zoo_folders import save_zoo_teacher

# The old spellings, accepted with a warning for one release (every flag is spelled with underscores).
RENAMED = {f"--{name.replace('_', '-')}": f"--{name}" for name in ("image_mean", "image_std", "reported_robustness")}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "checkpoint", help="checkpoint file (.pt/.pth/.safetensors) or robustbench:<dataset>/<threat>/<name>"
    )
    parser.add_argument("--arch", help=f"source architecture of a checkpoint file, one of: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--robustbench_model_dir", default=DEFAULT_MODEL_DIR,
                        help="RobustBench's model folder, for robustbench:... (default %(default)s)")  # fmt: skip
    parser.add_argument("--output", required=True, help="folder to write the Hugging Face model to")
    parser.add_argument("--image_mean", type=float, nargs=3, help="input mean the source model was trained with")
    parser.add_argument("--image_std", type=float, nargs=3, help="input std the source model was trained with")
    parser.add_argument(
        "--image_size", type=int, help="resolution the checkpoint was trained at (for --arch timm:<name>, e.g. 32)"
    )
    parser.add_argument("--source", help="where the checkpoint comes from (URL, paper, RobustBench id), for the card")
    parser.add_argument("--reported_robustness", help="robust accuracy the source reports, for the card")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parse_args(parser, renamed_flags(sys.argv[1:] if argv is None else list(argv), RENAMED))
    if (args.image_mean is None) != (args.image_std is None):
        parser.error("pass both --image_mean and --image_std, or neither")
    normalization = None if args.image_mean is None else (args.image_mean, args.image_std)
    zoo = is_zoo_spec(args.checkpoint)
    if zoo and (args.arch or normalization or args.source or args.reported_robustness or args.image_size):
        parser.error(
            f"{args.checkpoint} is read from RobustBench (architecture, input and provenance): pass only --output "
            "(and --robustbench_model_dir)"
        )
    if not zoo and not args.arch:
        parser.error("--arch is required for a checkpoint file")
    try:
        if zoo:
            model = save_zoo_teacher(args.checkpoint, args.output, args.robustbench_model_dir)
        else:
            model = save_converted_teacher(
                args.checkpoint,
                args.arch,
                args.output,
                normalization,
                args.source,
                args.reported_robustness,
                args.image_size,
            )
    except (ValueError, FileNotFoundError, ImportError) as error:
        parser.error(str(error))
    print(f"Wrote {type(model).__name__} ({model.config.num_labels} classes) to {args.output}")


if __name__ == "__main__":
    main()
