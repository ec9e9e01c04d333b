"""One input contract for students (issue 35, item 1): a student that normalises (an HF classifier through its image
processor, a timm model through its `pretrained_cfg`) is trained, evaluated by the Trainer, evaluated for robustness,
described in its card and run by `pipeline` on its saved folder under its own normalisation; a student whose
convention cannot be determined is refused before training."""

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from test_reliability import plain_images, tiny_run_argv, write_dataset
from transformers import (
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    TrainerCallback,
    ViTImageProcessor,
    pipeline,
)

from mixacm_hf.cli import parse_with_config
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser

pytestmark = pytest.mark.usefixtures("single_thread")

# far from raw pixels: a model fed [0, 1] pixels instead predicts otherwise
MEAN, STD = (0.9, 0.1, 0.5), (0.05, 0.5, 0.1)
N_TEST = 32


def varied_images(n: int, seed: int = 1) -> list[Image.Image]:
    """32-px images of one random colour each plus noise: a random-weight model tells them apart."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n, 1, 1, 3))
    noisy = np.clip(colours + rng.integers(-30, 31, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return [Image.fromarray(image) for image in noisy]


def pixels(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 for image in images])


def normalised(images: list[Image.Image], mean=MEAN, std=STD) -> torch.Tensor:
    return (pixels(images) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def predictions(model: torch.nn.Module, images: list[Image.Image], mean=MEAN, std=STD) -> torch.Tensor:
    """The model's classes for `images` under the normalisation (mean, std), computed here directly."""
    with torch.no_grad():
        return model.eval()(pixel_values=normalised(images, mean, std)).logits.argmax(1)


def labelled_dataset(folder: Path, splits: dict[str, tuple[list[Image.Image], list[int]]]) -> Path:
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        table = datasets.Dataset.from_dict({"img": images, "label": labels}, features).data.table
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")
    return folder


def hf_student(folder: Path) -> torch.nn.Module:
    """A tiny HF ResNet saved with a ViT image processor that normalises with MEAN/STD."""
    torch.manual_seed(0)
    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10)
    )
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=list(MEAN), image_std=list(STD)).save_pretrained(
        folder
    )
    return model


def timm_student(folder: Path) -> torch.nn.Module:
    """A tiny timm ResNet as a `TimmWrapperForImageClassification` folder (as `convert_teacher.py timm:` writes one)
    whose `pretrained_cfg` normalises with MEAN/STD; no image processor."""
    timm = pytest.importorskip("timm")
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    pretrained_cfg = {**timm.create_model("test_resnet", pretrained=False).pretrained_cfg, "mean": MEAN, "std": STD}
    config = TimmWrapperConfig(architecture="test_resnet", num_labels=10, pretrained_cfg=pretrained_cfg)
    model = TimmWrapperForImageClassification(config)
    torch.nn.init.normal_(model.timm_model.fc.weight)  # timm's head starts near zero: near-constant logits
    for module in model.modules():  # BatchNorm statistics of images like the test's: predictions that vary
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()(pixel_values=normalised(varied_images(64, seed=2)))
    model.eval().save_pretrained(folder)
    return model


class TrainerAccuracy(TrainerCallback):
    """The Trainer's own evaluation accuracy."""

    def __init__(self) -> None:
        self.accuracies: list[float] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        self.accuracies.append(metrics["eval_accuracy"])


@pytest.mark.parametrize("make_student", [hf_student, timm_student], ids=["hf-processor", "timm"])
def test_a_normalising_student_is_trained_evaluated_carded_and_piped_under_its_own_normalisation(
    tmp_path, make_student
):
    student = make_student(tmp_path / "student")
    test_images = varied_images(N_TEST)
    train_images = plain_images(8)
    labels = predictions(student, test_images).tolist()  # the untrained model is right on all of them
    data = labelled_dataset(
        tmp_path / "data", {"train": (train_images, [i % 10 for i in range(8)]), "test": (test_images, labels)}
    )
    out = tmp_path / "out"
    argv = tiny_run_argv(
        data, out, "--student", str(tmp_path / "student"), "--learning_rate", "1e-12", "--eval_strategy", "steps",
        "--eval_steps", "1",
    )  # fmt: skip
    trainer_accuracy = TrainerAccuracy()
    summary = run_mixacm(*parse_with_config(argument_parser(), argv), callbacks=[trainer_accuracy])

    # the reference: the saved weights (BatchNorm statistics moved by the step) under their own normalisation
    saved = AutoModelForImageClassification.from_pretrained(out)
    expected = predictions(saved, test_images)
    reference = (expected == torch.tensor(labels)).float().mean().item()
    raw = (predictions(saved, test_images, (0, 0, 0), (1, 1, 1)) == torch.tensor(labels)).float().mean().item()
    assert reference > 0.5 and abs(reference - raw) > 0.1  # the test tells the two conventions apart

    assert trainer_accuracy.accuracies == [pytest.approx(reference)]
    (report,) = summary["robustness"]
    assert report.clean_accuracy == pytest.approx(reference) and summary["clean_accuracy"] == pytest.approx(reference)
    card = ModelCard.load(out / "README.md")
    values = {result.metric_config: result.metric_value for result in card.data.eval_results}
    assert values["clean"] == pytest.approx(round(100 * reference, 2))
    assert "(mean 0.9, 0.1, 0.5, std 0.05, 0.5, 0.1)" in card.text and "no mean/std normalisation" not in card.text
    assert "(0.05, 0.5, 0.1)" in summary["student_input"] or "[0.05, 0.5, 0.1]" in summary["student_input"]

    classify = pipeline("image-classification", model=str(out), device="cpu")
    piped = [saved.config.label2id[result[0]["label"]] for result in classify(test_images, top_k=1)]
    assert piped == expected.tolist()
    assert np.mean(np.array(piped) == np.array(labels)) == pytest.approx(reference)


def test_a_student_whose_convention_cannot_be_determined_is_refused_before_training(tmp_path):
    torch.manual_seed(0)
    ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10)
    ).save_pretrained(tmp_path / "bare")  # no image processor: normalised or not, nobody can tell
    data = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    argv = tiny_run_argv(data, tmp_path / "out", "--student", str(tmp_path / "bare"))
    with pytest.raises(ValueError) as refused:
        run_mixacm(*parse_with_config(argument_parser(), argv))
    message = str(refused.value)
    assert f"Cannot tell how --student {tmp_path / 'bare'} (ResNetForImageClassification) expects its pixels" in message
    assert "Save the image processor it was trained with in the folder" in message
    assert "--student_from_config true" in message
    assert not (tmp_path / "out" / "model.safetensors").exists()

    ViTImageProcessor(do_pad=True).save_pretrained(tmp_path / "bare")  # a step the forward cannot apply
    with pytest.raises(ValueError, match=rf"--student {tmp_path / 'bare'}: The image processor .* applies do_pad"):
        run_mixacm(*parse_with_config(argument_parser(), argv))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_new_student_from_a_config_is_saved_with_a_processor_of_raw_pixels(tmp_path):
    """A student built from a folder's config (its processor normalises) trains on raw [0, 1] pixels, and its saved
    processor and card say so, replacing any processor left in the output folder."""
    hf_student(tmp_path / "source")
    data = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    out.mkdir()
    ViTImageProcessor(image_mean=[0.2] * 3, image_std=[0.3] * 3).save_pretrained(out)  # a stale one
    argv = tiny_run_argv(data, out, "--student", str(tmp_path / "source"), "--student_from_config", "true")
    summary = run_mixacm(*parse_with_config(argument_parser(), argv))
    processor = ViTImageProcessor.from_pretrained(out)
    assert not processor.do_normalize and processor.size == {"height": 32, "width": 32}
    assert "no mean/std normalisation" in (out / "README.md").read_text()
    assert summary["student_input"].startswith("wrapped:") and "pixels -" not in summary["student_input"]


def test_a_student_gets_in_training_the_input_the_evaluator_gives_its_folder(tmp_path, caplog):
    """The student's forward applies its processor's steps as the evaluator's wrapper applies them to the saved
    folder, a resize to the processor's size included (warned: the data's size differs), on [0, 1] pixels."""
    from mixacm_hf.robustness import as_classifier
    from mixacm_hf.students import apply_student_input, student_input

    hf_student(tmp_path / "student")
    ViTImageProcessor(size={"height": 48, "width": 48}, image_mean=list(MEAN), image_std=list(STD)).save_pretrained(
        tmp_path / "student"
    )
    student = AutoModelForImageClassification.from_pretrained(tmp_path / "student").eval()
    seen = []
    student.resnet.embedder.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    with caplog.at_level("WARNING"):
        convention = student_input(student, str(tmp_path / "student"), 32, pretrained=True)
    assert "resizes the data's 32 px images to 48x48" in caplog.text
    apply_student_input(student, convention)
    x = pixels(varied_images(4))
    evaluator, info = as_classifier(str(tmp_path / "student"))
    with torch.no_grad():
        torch.testing.assert_close(student(pixel_values=x).logits, evaluator(x).logits)
    assert seen == [(48, 48)] and convention.description == info["input"]


def test_an_evaluation_under_given_normalisation_is_recorded_as_the_folders_processor(tmp_path):
    """A folder without an image processor evaluated with --image_mean/--image_std and --update_card: they are saved
    as its processor, so that pipeline() gives the report's accuracy and the card's re-evaluation command (without
    them) runs; a folder whose processor says otherwise is refused before any evaluation."""
    from training.evaluate_robustness import main as evaluate_main

    model = hf_student(tmp_path / "model")
    (tmp_path / "model" / "preprocessor_config.json").unlink()
    images = varied_images(N_TEST)
    labels = predictions(model, images).tolist()  # 100% under MEAN/STD
    data = labelled_dataset(tmp_path / "data", {"test": (images, labels)})
    argv = ["--model", str(tmp_path / "model"), "--dataset", str(data), "--attacks", "clean", "--eps_sweep", "",
            "--device", "cpu", "--update_card"]  # fmt: skip
    normalisation = ["--image_mean", *map(str, MEAN), "--image_std", *map(str, STD)]
    report = evaluate_main([*argv, *normalisation, "--output", str(tmp_path / "a.json")])
    assert report.clean_accuracy == 1.0
    saved = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert saved["do_normalize"] and saved["image_mean"] == list(MEAN) and saved["image_std"] == list(STD)
    classify = pipeline("image-classification", model=str(tmp_path / "model"), device="cpu")
    assert [int(out[0]["label"].split("_")[-1]) for out in classify(images, top_k=1)] == labels
    assert evaluate_main([*argv, "--output", str(tmp_path / "b.json")]).clean_accuracy == 1.0  # the card's command
    card = ModelCard.load(tmp_path / "model" / "README.md").text
    assert "Its image processor normalises the pixels outside the model (mean 0.9, 0.1, 0.5, std 0.05, 0.5" in card
    with pytest.raises(SystemExit) as exit_:
        evaluate_main([*argv, "--image_mean", "0", "0", "0", "--image_std", "1", "1", "1"])
    assert str(exit_.value.code).startswith(
        f"error: --image_mean/--image_std with --update_card: {tmp_path / 'model'} already says how its pixels are "
        "normalised (its preprocessor_config.json)"
    )
