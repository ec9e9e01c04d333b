"""Each script's errors name its own flags (issue 35): the library's messages name the training script's flags, and
training/evaluate_robustness.py shows them with its own (`own_flags`), or checks the setting itself first."""

import re
from pathlib import Path

import pytest
from test_reliability import plain_images, png_bytes, truncated_png, write_dataset
from transformers import ResNetConfig, ResNetForImageClassification

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification
from training.evaluate_robustness import argument_parser, main

pytestmark = pytest.mark.usefixtures("single_thread")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A dataset, one with an unreadable image, one with a label outside its classes, a WideResNet folder and an HF
    ResNet folder without an image processor (its normalisation unknown)."""
    root = tmp_path_factory.mktemp("inputs")
    images = [png_bytes(image) for image in plain_images(4)]
    folders = {
        "data": write_dataset(root / "data", {"test": images}),
        "bad_image": write_dataset(root / "bad_image", {"test": [images[0], truncated_png(), *images[2:]]}),
        "bad_label": write_dataset(root / "bad_label", {"test": images}, labels={"test": [0, 1, 12, 3]}),
    }
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).save_pretrained(
        root / "wrn"
    )
    tiny = ResNetConfig(num_labels=10, depths=[1, 1], hidden_sizes=[8, 8], embedding_size=8)
    ResNetForImageClassification(tiny).save_pretrained(root / "resnet")
    return {**folders, "wrn": root / "wrn", "resnet": root / "resnet", "root": root}


def error_of(argv: list[str]) -> str:
    """The message training/evaluate_robustness.py exits with (status 1)."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--device", "cpu", "--n_examples", "4"])
    assert isinstance(exited.value.code, str) and exited.value.code.startswith("error: ")
    return exited.value.code


CASES = {  # name -> (arguments beside --dataset, the flags its message names, a part of its message)
    "no such model": (["--model", "{root}/absent"], set(), "pass the path of a model folder or a Hub id."),
    "checkpoint file": (["--model", "{wrn}/model.safetensors"], {"--model"}, "is a file: give a model folder or Hub"),
    "model of unknown normalisation": (
        ["--model", "{resnet}"], {"--image_mean", "--image_std"}, "Pass image_mean and image_std (--image_mean/--image"
    ),
    "mean without std": (["--model", "{wrn}", "--image_mean", "0", "0", "0"], {"--image_mean", "--image_std"},
                         "Pass both --image_mean and --image_std, or neither."),
    "eps": (["--model", "{wrn}", "--eps", "8"], {"--eps"}, "--eps=8 spans the whole [0, 1] pixel range"),
    "eps sweep": (["--model", "{wrn}", "--eps_sweep", "0,8"], {"--eps_sweep"}, "--eps_sweep=8 spans the whole"),
    "attack": (["--model", "{wrn}", "--attacks", "clean,pgdx"], {"--attacks"}, "--attacks: Unknown attack 'pgdx'"),
    "split": (["--model", "{wrn}", "--split", "validation"], {"--split"}, "non-empty split (--split)."),
    "unreadable image": (["--model", "{wrn}"], set(), "image file is truncated Replace or remove it."),
    "label outside the classes": (["--model", "{wrn}"], set(), "must be class indices of the dataset's classes. Fix"),
}  # fmt: skip
DATASETS = {"unreadable image": "bad_image", "label outside the classes": "bad_label"}


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_robustness_errors_name_only_its_own_flags(inputs, case):
    arguments, named, part = CASES[case]
    arguments = [value.format(**{key: str(path) for key, path in inputs.items()}) for value in arguments]
    message = error_of([*arguments, "--dataset", str(inputs[DATASETS.get(case, "data")])])
    assert part in message
    assert set(FLAG.findall(message)) == named
    assert named <= set(FLAG.findall(argument_parser().format_help()))  # every flag named is one of the script's


@pytest.mark.parametrize(
    "script, argv",
    [
        ("evaluate_robustness", ["--model", "m", "--dataset", "d", "--n_examples", "abc"]),
        ("run_mixacm", ["--output_dir", "o", "--eval_n", "abc"]),
        ("convert_teacher", ["checkpoint.pt", "--output", "o", "--image_mean", "a", "b", "c"]),
    ],
)
def test_a_value_of_the_wrong_type_is_argparses_usage_error_with_status_2(script, argv, capsys):
    """A value that cannot be read as its flag's type: argparse's usage line, its message naming the flag and status 2
    (docs/guide.md); a readable but invalid value is the script's own error, status 1 (the cases above)."""
    import importlib

    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"training.{script}").main(argv)
    error = capsys.readouterr().err
    flag = next(arg for arg in reversed(argv) if arg.startswith("--"))
    assert exited.value.code == 2 and "usage:" in error and f"error: argument {flag}" in error


@pytest.mark.parametrize(
    "module, argv, suggestion",
    [
        ("training.evaluate_robustness", ["--model", "m", "--dataset", "d", "--n_example", "8"], "--n_examples"),
        ("training.convert_teacher", ["checkpoint.pt", "--output", "o", "--archh", "x"], "--arch"),
        ("mixacm_hf.hub.cli", ["leaderboard", "m", "--formt", "csv"], "--format"),
        ("mixacm_hf.hub.cli", ["compare", "a", "b", "--jsn"], "--json"),
    ],
)
def test_an_unknown_flag_names_the_closest_valid_ones(module, argv, suggestion, capsys):
    """Every script, as training/run_mixacm.py: an unknown flag is refused naming the closest flags it has."""
    import importlib

    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(argv)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and f"(did you mean {suggestion}" in error


def test_run_mixacm_suggests_no_deprecated_flag():
    """`--n_examples` (evaluate_robustness.py's spelling) is not pointed at the deprecated `--max_eval_samples`."""
    from training.run_mixacm import main as run_main

    with pytest.raises(SystemExit, match=r"^error: Unknown arguments: --n_examples") as exited:
        run_main(["--n_examples", "8"])
    assert "--max_eval_samples" not in str(exited.value.code)


def test_the_cards_evaluation_command_uses_only_current_flags():
    """The command a model card gives to evaluate the model again spells evaluate_robustness.py's flags as --help
    does (`--n 1000` gave a FutureWarning)."""
    from mixacm_hf.hub.cards import TEMPLATE

    command = TEMPLATE.read_text().partition("python training/evaluate_robustness.py")[2].partition("```")[0]
    assert "--n_examples 1000" in command
    assert set(FLAG.findall(command)) <= set(FLAG.findall(argument_parser().format_help()))


def test_n_examples_beyond_the_split_is_named_as_the_flag(inputs):
    """The library names its keyword argument (`n_examples=8 ... or None for all`); the script names its flag."""
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(inputs["wrn"]), "--dataset", str(inputs["data"]), "--device", "cpu", "--n_examples", "8"])
    assert exited.value.code == (
        "error: --n_examples 8 but the split test has 4 examples: pass at most 4, or leave --n_examples out for all."
    )


def test_an_unreadable_budget_of_the_hub_cli_says_why(capsys):
    from mixacm_hf.hub.cli import main as hub_main

    with pytest.raises(SystemExit) as exited:
        hub_main(["leaderboard", "m", "--eps", "x"])
    assert exited.value.code == 2 and "argument --eps: Cannot parse eps 'x'" in capsys.readouterr().err
