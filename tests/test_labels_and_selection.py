"""Any student trained and reported right (issue 35, items 2, 3, 6): labels matched to the model's classes by name
(a renamed class refused naming it, classes in another order remapped), no checkpoint chosen on the reported split
(a validation split or a held-out fraction of the training split, named in the card), and student configs built at
the run's --image_size."""

import json
import logging
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_reliability import plain_images, tiny_run_argv, write_dataset
from transformers import ConvNextConfig, ConvNextForImageClassification, EarlyStoppingCallback

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments, WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.cli import parse_with_config
from mixacm_hf.data import (
    class_balanced_holdout,
    class_names,
    collate_image_batch,
    label_order,
    load_image_dataset,
    model_class_names,
)
from mixacm_hf.robustness import evaluate_robustness
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser, check_arguments

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.evaluate_robustness import main as evaluate_main  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
QUIET = {"progress": False, "device": "cpu", "seed": 0}


def named_wrn(names: list[str] = CIFAR10, seed: int = 0) -> WideResNetForImageClassification:
    torch.manual_seed(seed)
    config = WideResNetConfig.from_name(
        "wrn-10-1", num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    return WideResNetForImageClassification(config).eval()


def predictions(model, images) -> list[int]:
    pixels = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 for image in images])
    with torch.no_grad():
        return model(pixel_values=pixels).logits.argmax(1).tolist()


def named_dataset(folder: Path, splits: dict[str, tuple[list, list[str]]], names: list[str]) -> Path:
    """Parquet splits of (images, class names per image) whose ClassLabel lists `names` in that order."""
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        rows = {"img": images, "label": [names.index(label) for label in labels]}
        pq.write_table(
            datasets.Dataset.from_dict(rows, features).data.table, folder / f"{split}-00000-of-00001.parquet"
        )
    return folder


def image_folder(folder: Path, images: list, labels: list[str], splits: tuple[str, ...] = ("test",)) -> Path:
    """An imagefolder layout: <folder>/<split>/<class>/<i>.png, the same images in each split."""
    for split in splits:
        for i, (image, label) in enumerate(zip(images, labels)):
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            image.save(folder / split / label / f"{i}.png")
    return folder


# -- labels by name ----------------------------------------------------------------------------------------------------


def test_labels_are_matched_by_name_and_placeholders_are_no_names(caplog):
    assert label_order(CIFAR10, CIFAR10) is None
    assert label_order(CIFAR10[::-1], [name.upper() for name in CIFAR10]) == list(range(9, -1, -1))
    assert label_order(["cat", "ship"], CIFAR10) == [3, 8]  # a split of some of the model's classes
    with pytest.raises(ValueError, match=r"the dataset has `car` where the model has `automobile`"):
        label_order([name.replace("automobile", "car") for name in CIFAR10], CIFAR10)
    with caplog.at_level(logging.WARNING):
        assert label_order([str(i) for i in range(10)], CIFAR10) is None  # ClassLabel(num_classes=10): no names
        assert label_order(CIFAR10, {i: f"LABEL_{i}" for i in range(10)}.values()) is None
    assert caplog.text.count("matched by position") == 2
    assert model_class_names(named_wrn()) == CIFAR10
    assert model_class_names(WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1"))) is None


def test_a_renamed_class_folder_is_refused_naming_the_classes(tmp_path, capsys):
    """The imagefolder's `car` sorts before `cat`: by position its labels would be shifted (a wrong accuracy)."""
    model = named_wrn()
    model.save_pretrained(tmp_path / "model")
    images = plain_images(20)
    labels = [CIFAR10[i % 10] for i in range(20)]
    renamed = image_folder(tmp_path / "renamed", images, [label.replace("automobile", "car") for label in labels])
    argv = ["--model", str(tmp_path / "model"), "--dataset", str(renamed), "--attacks", "clean", "--eps_sweep", "",
            "--output", str(tmp_path / "report.json")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(argv)
    message = str(exit_.value.code)
    assert "has `car` where the model has `automobile`" in message and "rename the class folder" in message
    assert not (tmp_path / "report.json").exists()
    same = image_folder(tmp_path / "same", images, labels)  # the model's names: evaluated, by name
    report = evaluate_robustness(str(tmp_path / "model"), str(same), ["clean"], **QUIET)
    expected = np.mean(np.array(predictions(model, images)) == np.array([CIFAR10.index(label) for label in labels]))
    assert report.clean_accuracy == pytest.approx(expected)
    renamed_labels = [label.replace("automobile", "car") for label in labels]
    both = image_folder(tmp_path / "both", images, renamed_labels, ("train", "test"))  # training on it: refused too
    argv = tiny_run_argv(both, tmp_path / "out", "--student", str(tmp_path / "model"))
    with pytest.raises(ValueError, match=r"The classes of the 'train' split of .* differ from the model's: .* has "
                                         r"`car` where the model has `automobile`"):  # fmt: skip
        run_mixacm(*parse_with_config(argument_parser(), argv))
    assert not (tmp_path / "out").exists()


def test_classes_in_another_order_give_the_accuracy_of_the_ordered_dataset(tmp_path):
    """The same images and classes, the ClassLabel listing them in another order: every evaluation path (a folder, a
    `datasets.Dataset`, a dataset loaded for training) maps the labels by name, so the accuracy is the ordered one's.
    The labels are the model's own predictions: 100% by name, far less by position."""
    model = named_wrn()
    model.save_pretrained(tmp_path / "model")
    images = plain_images(20)
    labels = [CIFAR10[p] for p in predictions(model, images)]
    permuted_names = CIFAR10[3:] + CIFAR10[:3]
    ordered = named_dataset(tmp_path / "ordered", {"test": (images, labels)}, CIFAR10)
    permuted = named_dataset(tmp_path / "permuted", {"test": (images, labels)}, permuted_names)
    raw = [datasets.load_dataset(str(path), split="test")["label"] for path in (ordered, permuted)]
    assert raw[0] != raw[1]  # by position the permuted labels name other classes
    accuracy = {
        name: evaluate_robustness(str(tmp_path / "model"), str(path), ["clean"], **QUIET).clean_accuracy
        for name, path in (("ordered", ordered), ("permuted", permuted))
    }
    assert accuracy == {"ordered": 1.0, "permuted": 1.0}
    as_dataset = datasets.load_dataset(str(permuted), split="test")
    assert evaluate_robustness(model, as_dataset, ["clean"], **QUIET).clean_accuracy == 1.0
    loaded = load_image_dataset(str(permuted), "test", train=False, label_names=CIFAR10)
    assert [row["labels"] for row in loaded] == raw[0] and class_names(loaded) == CIFAR10
    in_memory = load_image_dataset(str(permuted), "test", train=False, label_names=CIFAR10, in_memory=True)
    assert in_memory.labels.tolist() == raw[0] and class_names(in_memory) == CIFAR10


def test_a_pretrained_student_trains_and_is_evaluated_on_its_own_classes(tmp_path):
    """A pretrained student whose classes the dataset lists in another order: its training and evaluation data are
    mapped to its classes. At learning rate 0 the trained model predicts what a first run's did (only its BatchNorm
    statistics move, alike): with those predictions as the test labels both orders give 100%."""
    named_wrn().save_pretrained(tmp_path / "student")
    images, labels = plain_images(16), [CIFAR10[i % 10] for i in range(16)]

    def run(name: str, order: list[str], test_labels: list[str]) -> dict:
        data = named_dataset(tmp_path / name, {"train": (images[:8], labels[:8]), "test": (images[8:], test_labels)},
                             order)  # fmt: skip
        argv = tiny_run_argv(data, tmp_path / f"out-{name}", "--student", str(tmp_path / "student"))
        summary = run_mixacm(*parse_with_config(argument_parser(), [*argv, "--learning_rate", "0"]))
        saved = json.loads((tmp_path / f"out-{name}" / "config.json").read_text())
        assert list(saved["id2label"].values()) == CIFAR10  # the student's classes, in its order
        return summary

    run("first", CIFAR10, labels[8:])
    trained = WideResNetForImageClassification.from_pretrained(tmp_path / "out-first").eval()
    predicted = [CIFAR10[p] for p in predictions(trained, images[8:])]
    assert run("ordered", CIFAR10, predicted)["clean_accuracy"] == 1.0
    assert run("permuted", CIFAR10[::-1], predicted)["clean_accuracy"] == 1.0


def test_the_trainer_refuses_data_of_other_classes_or_in_another_order(tmp_path):
    images, labels = plain_images(4), CIFAR10[2:6]
    args = MixACMTrainingArguments(output_dir=str(tmp_path / "out"), method="natural", use_cpu=True, report_to=[])
    permuted = named_dataset(tmp_path / "permuted", {"test": (images, labels)}, CIFAR10[::-1])
    renamed = named_dataset(tmp_path / "renamed", {"test": (images, labels)}, ["car", *CIFAR10[2:], "plane"])
    for folder, message in ((permuted, "the model's in another order: load it with `load_image_dataset"),
                            (renamed, "the eval_dataset has `car`, `plane` where the model has `airplane`, "
                                      "`automobile`")):  # fmt: skip
        data = load_image_dataset(str(folder), "test", train=False)
        with pytest.raises(ValueError, match=message):
            MixACMTrainer(model=named_wrn(), args=args, eval_dataset=data, data_collator=collate_image_batch)
    mapped = load_image_dataset(str(permuted), "test", train=False, label_names=CIFAR10)
    MixACMTrainer(model=named_wrn(), args=args, eval_dataset=mapped, data_collator=collate_image_batch)


# -- no checkpoint chosen on the reported split -----------------------------------------------------------------------

SELECTING = ["--load_best_model_at_end", "true", "--metric_for_best_model", "accuracy", "--eval_strategy", "steps",
             "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1", "--max_steps", "3"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "callbacks", "message"),
    [
        (SELECTING, (), r"--load_best_model_at_end, --metric_for_best_model accuracy would select a checkpoint on "
                        r"the --eval_split 'test'.*pass --validation_split NAME .* or --validation_fraction F"),
        (["--metric_for_best_model", "loss"], (), r"--metric_for_best_model loss would select"),
        (["--eval_strategy", "steps", "--metric_for_best_model", "loss"], (EarlyStoppingCallback(2),),
         r"--metric_for_best_model loss, an EarlyStoppingCallback would select"),
        ([*SELECTING, "--validation_split", "test"], (), r"--validation_split test is the reported --eval_split"),
        ([*SELECTING, "--validation_split", "train"], (), r"--validation_split train is --train_split"),
        ([*SELECTING, "--validation_fraction", "1.5"], (), r"--validation_fraction 1.5: give a number in \(0, 1\)"),
        ([*SELECTING, "--validation_fraction", "0.2", "--validation_split", "valid"], (), r"not both"),
    ],
)  # fmt: skip
def test_selection_on_the_reported_split_is_refused_before_any_work(tmp_path, flags, callbacks, message):
    argv = tiny_run_argv(tmp_path / "absent", tmp_path / "out", *flags)
    with pytest.raises(ValueError, match=message):
        check_arguments(*parse_with_config(argument_parser(), argv), callbacks)
    with pytest.raises(ValueError, match=message):  # the run stops there: no data, no folder
        run_mixacm(*parse_with_config(argument_parser(), argv), callbacks=callbacks)
    assert not (tmp_path / "out").exists()


def test_the_held_out_validation_set_is_class_balanced_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    held = class_balanced_holdout(labels, 0.1, seed=3)
    assert np.bincount(labels[held]).tolist() == [1, 2, 3, 4] and held == sorted(held)
    assert class_balanced_holdout(labels, 0.1, seed=3) == held != class_balanced_holdout(labels, 0.1, seed=4)
    with pytest.raises(ValueError, match="holds out no image"):
        class_balanced_holdout(labels[:4], 0.1, seed=0)


@pytest.mark.parametrize("validation", ["split", "fraction"])
def test_the_kept_checkpoint_and_its_validation_data_are_recorded_and_carded(tmp_path, validation):
    splits = {"train": plain_images(24), "validation": plain_images(8), "test": plain_images(4)}
    data = write_dataset(tmp_path / "data", splits)
    flags = ["--validation_split", "validation"] if validation == "split" else ["--validation_fraction", "0.25"]
    argv = tiny_run_argv(data, tmp_path / "out", *SELECTING, "--metric_for_best_model", "loss", *flags)
    summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    recorded = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    weights = recorded["weights"]
    assert weights["metric"] == "loss" and weights["greater_is_better"] is False
    assert weights["checkpoint"] == f"checkpoint-{weights['step']}" and 1 <= weights["step"] <= 3
    assert (tmp_path / "out" / weights["checkpoint"]).is_dir()
    card = (tmp_path / "out" / "README.md").read_text()
    kept = f"| Weights kept | `{weights['checkpoint']}` (step {weights['step']}), the best by `loss`"
    assert kept in card and "not on the split the results above are measured on" in card
    if validation == "split":
        assert recorded["validation"] == {"split": "validation", "held_out_fraction": None, "seed": None, "n": 8}
        assert recorded["n_train"] == 24 and "on the `validation` split (8 images)" in card
    else:  # round(0.25 * 3) = 1 of the 3 images of classes 0-3, round(0.25 * 2) = 0 of classes 4-9
        assert recorded["validation"] == {"split": "train", "held_out_fraction": 0.25, "seed": 42, "n": 4}
        assert recorded["n_train"] == 20
        assert "held out of the `train` split (0.25 of each class, drawn with seed 42) and left out of training" in card
    assert summary["steps"] == 3


def test_without_selection_the_card_keeps_the_last_step(tmp_path):
    data = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    run_mixacm(*parse_with_config(argument_parser(), tiny_run_argv(data, tmp_path / "out")))
    assert "| Weights kept | the last step's (step 1) |" in (tmp_path / "out" / "README.md").read_text()


# -- student configs at the run's image size ------------------------------------------------------------------------


def tiny_convnext(image_size: int) -> ConvNextConfig:
    return ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=10, image_size=image_size)


def test_a_224_px_convnext_config_trains_on_32_px_data_with_its_image_size(tmp_path):
    """MixACM probes the student's channels at the data's size (a 224-px probe of a 32-px WRN teacher was refused),
    and the new student's config says the size it was trained at."""
    tiny_convnext(224).save_pretrained(tmp_path / "convnext")
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).save_pretrained(
        tmp_path / "teacher"
    )
    data = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    argv = tiny_run_argv(
        data, tmp_path / "out", "--student", str(tmp_path / "convnext"), "--student_from_config", "true",
        "--image_size", "32", "--method", "mixacm", "--teacher", str(tmp_path / "teacher"),
        "--acm_layer_mapping", "relative_depth",
    )  # fmt: skip
    summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    assert summary["steps"] == 1 and summary["clean_accuracy"] is not None
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["model_type"] == "convnext" and saved["image_size"] == 32


def test_pretrained_weights_of_another_image_size_are_refused_with_the_fix(tmp_path):
    ConvNextForImageClassification(tiny_convnext(224)).save_pretrained(tmp_path / "convnext")
    data = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    argv = tiny_run_argv(data, tmp_path / "out", "--student", str(tmp_path / "convnext"), "--image_size", "32")
    with pytest.raises(ValueError, match=r"trained on 224x224 images .*not --image_size 32: pass --image_size 224, "
                                         r"or --student_from_config true"):  # fmt: skip
        run_mixacm(*parse_with_config(argument_parser(), argv))
    assert not (tmp_path / "out").exists()


# -- labels without a ClassLabel ---------------------------------------------------------------------------------------


def plain_labels_dataset(folder: Path, labels: list, feature: datasets.Value) -> Path:
    """Parquet train/test splits whose label column is a plain `feature` (strings, integers), not a ClassLabel."""
    features = datasets.Features({"img": datasets.Image(), "label": feature})
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rows = {"img": plain_images(len(labels)), "label": labels}
        pq.write_table(
            datasets.Dataset.from_dict(rows, features).data.table, folder / f"{split}-00000-of-00001.parquet"
        )
    return folder


def test_string_labels_are_refused_by_both_scripts_naming_the_column(tmp_path):
    """Class names as strings say no order: refused (the evaluator ended in a traceback, training in a warning that
    they were used by position, then an error naming no column)."""
    data = plain_labels_dataset(tmp_path / "data", [CIFAR10[i % 10] for i in range(8)], datasets.Value("string"))
    named_wrn().save_pretrained(tmp_path / "model")
    expected = f"The label column 'label' of the 'test' split of {data} holds strings (class names), not class indices"
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(["--model", str(tmp_path / "model"), "--dataset", str(data), "--attacks", "clean",
                       "--eps_sweep", "", "--device", "cpu", "--output", str(tmp_path / "r.json")])  # fmt: skip
    assert str(exit_.value.code).startswith(f"error: {expected}")
    argv = tiny_run_argv(data, tmp_path / "out", "--student", str(tmp_path / "model"))
    with pytest.raises(ValueError, match="'train' split of .* holds strings .* ClassLabel\\(names=\\[...\\]\\)"):
        run_mixacm(*parse_with_config(argument_parser(), argv))


def test_unnamed_integer_labels_train_a_pretrained_student_by_position_and_are_range_checked(tmp_path, caplog):
    named_wrn().save_pretrained(tmp_path / "model")
    data = plain_labels_dataset(tmp_path / "data", [i % 10 for i in range(8)], datasets.Value("int64"))
    argv = tiny_run_argv(data, tmp_path / "out", "--student", str(tmp_path / "model"))
    with caplog.at_level(logging.WARNING, logger="mixacm_hf.data.labels"):
        summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    assert summary["n_eval"] == 8 and summary["clean_accuracy"] is not None
    assert "The model names its classes but the 'train' split of" in caplog.text
    bad = plain_labels_dataset(tmp_path / "bad", [i % 12 for i in range(12)], datasets.Value("int64"))
    argv = tiny_run_argv(bad, tmp_path / "out-bad", "--student", str(tmp_path / "model"))
    with pytest.raises(ValueError, match=r"label\(s\) of the 'train' split are outside \[0, 10\) \(row 10: 10, row 11"):
        run_mixacm(*parse_with_config(argument_parser(), argv))
    new = tiny_run_argv(data, tmp_path / "out-new")  # a new student: its number of classes is unknown
    with pytest.raises(ValueError, match="the number of classes of a new student cannot be told from its integers"):
        run_mixacm(*parse_with_config(argument_parser(), new))
