"""Train a robust student with MixACM (or a baseline) and save it as a Hugging Face model folder.

accelerate launch training/run_mixacm.py --config training/configs/cifar10_cpu_wrn16-2.yaml [--flag value ...]
"""

import logging
import sys

import transformers

from mixacm_hf.cli import config_flags, explicit_flags, parse_with_config
from mixacm_hf.hub import HubPushError
from mixacm_hf.run import EvaluationFailed, format_summary, run_mixacm
from mixacm_hf.run_args import argument_parser, unused_flags

logger = logging.getLogger("run_mixacm")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        model_args, data_args, training_args, eval_args = parse_with_config(argument_parser(), argv)
        flags = explicit_flags(argv) - ({"teacher"} if not model_args.teacher else set())  # --teacher '': none
        refused = unused_flags(training_args.method, flags)  # another method's flag, a teacher's for none
        if refused:
            raise ValueError(" ".join(refused))
        config, config_keys = config_flags(argv)
    except ValueError as error:  # an invalid flag value: the message names it
        sys.exit(f"error: {error}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    # one config file serves several methods: what this one ignores is said, not refused (run_mixacm warns of --teacher)
    reasons = unused_flags(training_args.method, config_keys - flags - {"teacher"})
    if reasons:
        logger.warning("--config %s sets values this method ignores. %s", config, " ".join(reasons))
    try:
        summary = run_mixacm(model_args, data_args, training_args, eval_args)
    except (HubPushError, EvaluationFailed, ValueError, OSError) as error:
        # A failed push or end-of-run evaluation (the model is saved; the message says how to retry) or bad input
        # such as a model folder without weights (the message names it): exit with status 1, without a traceback.
        sys.exit(f"error: {error}")
    if training_args.process_index == 0:
        print(format_summary(summary))


if __name__ == "__main__":
    main()
