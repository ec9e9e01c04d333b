"""Data pipeline: column detection, transforms, collation, streaming, errors; the run_mixacm.py smoke run."""

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image
from transformers import AutoModelForImageClassification

from mixacm_hf.data import (
    InMemoryImageDataset,
    class_names,
    collate_image_batch,
    image_transform,
    load_image_dataset,
    random_crop_flip,
    resolve_columns,
)


def test_resolve_columns():
    assert resolve_columns(["img", "label"]) == ("img", "label")
    assert resolve_columns(["image", "fine_label", "coarse_label"]) == ("image", "fine_label")
    assert resolve_columns(["x", "y"], image_column="x", label_column="y") == ("x", "y")
    with pytest.raises(ValueError, match="Pass `image_column=<name>`"):
        resolve_columns(["picture", "label"])
    with pytest.raises(ValueError, match="label_column='target' is not a column"):
        resolve_columns(["img", "label"], label_column="target")


def test_transforms_range_shape_and_augmentation():
    image = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    eval_tensor = image_transform(train=False)(image)
    assert eval_tensor.shape == (3, 32, 32) and eval_tensor.dtype == torch.float32
    assert torch.allclose(eval_tensor, torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
    torch.manual_seed(0)
    train_tensors = [image_transform(train=True)(image) for _ in range(8)]
    assert all(t.shape == (3, 32, 32) and 0 <= t.min() and t.max() <= 1 for t in train_tensors)
    assert any(not torch.equal(t, eval_tensor) for t in train_tensors)  # crops/flips change the image
    gray = image_transform(train=False)(Image.new("L", (32, 32), 51))
    assert gray.shape == (3, 32, 32) and torch.allclose(gray, torch.full_like(gray, 0.2))
    large = image_transform(train=False, image_size=56)(Image.new("RGB", (80, 64)))
    assert large.shape == (3, 56, 56)


def test_collate():
    batch = collate_image_batch([{"pixel_values": torch.zeros(3, 4, 4), "labels": 3}] * 2)
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["labels"].tolist() == [3, 3]


def test_cifar10_map_style_and_streaming(cifar10_path):
    train = load_image_dataset(str(cifar10_path), "train", max_samples=64)
    assert len(train) == 64 and class_names(train)[:2] == ["airplane", "automobile"]
    example = train[0]
    assert example["pixel_values"].shape == (3, 32, 32) and isinstance(example["labels"], int)
    test = load_image_dataset(str(cifar10_path), "test", max_samples=8)
    stream = load_image_dataset(str(cifar10_path), "test", streaming=True, max_samples=8)
    assert isinstance(stream, datasets.IterableDataset)
    streamed = list(stream)
    assert len(streamed) == 8
    for row, item in zip(streamed, (test[i] for i in range(8))):  # eval split: no augmentation, same order
        assert torch.equal(row["pixel_values"], item["pixel_values"]) and row["labels"] == item["labels"]


def crop_and_flip_of(augmented: torch.Tensor, image: torch.Tensor, padding: int = 4) -> tuple[int, int, bool] | None:
    """(top, left, flipped) such that `augmented` is that crop of the zero-padded `image`, or None."""
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    height, width = image.shape[-2:]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[..., top : top + height, left : left + width]
            for flipped in (False, True):
                if torch.equal(augmented, crop.flip(-1) if flipped else crop):
                    return top, left, flipped
    return None


def test_random_crop_flip_gives_every_image_its_own_crop_of_the_padded_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)  # no zeros: unambiguous
    torch.manual_seed(0)
    augmented = random_crop_flip(images, padding=4)
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    found = [crop_and_flip_of(out, image) for out, image in zip(augmented, images)]
    assert None not in found
    tops, lefts, flips = zip(*found)
    assert len(set(tops)) >= 6 and len(set(lefts)) >= 6 and min(tops + lefts) == 0 and max(tops + lefts) == 8
    assert 16 <= sum(flips) <= 48  # fair coin per image


def test_in_memory_dataset_matches_the_per_image_pipeline(cifar10_path):
    reference = load_image_dataset(str(cifar10_path), "train", train=False, max_samples=48)
    evaluation = load_image_dataset(str(cifar10_path), "train", train=False, max_samples=48, in_memory=True)
    assert isinstance(evaluation, InMemoryImageDataset) and len(evaluation) == 48
    for i in range(48):  # no augmentation: the very same tensors (decoding, RGB, [0, 1] scaling)
        assert torch.equal(evaluation[i]["pixel_values"], reference[i]["pixel_values"])
        assert evaluation[i]["labels"] == reference[i]["labels"]
    training = load_image_dataset(str(cifar10_path), "train", max_samples=48, in_memory=True)
    torch.manual_seed(0)
    batch = collate_image_batch(training.__getitems__(list(range(48))))  # how DataLoader fetches a batch
    assert batch["pixel_values"].shape == (48, 3, 32, 32) and batch["labels"].tolist() == evaluation.labels.tolist()
    crops = [crop_and_flip_of(x, reference[i]["pixel_values"]) for i, x in enumerate(batch["pixel_values"])]
    assert None not in crops and len(set(crops)) > 10
    with pytest.raises(ValueError, match="drop --in_memory_images"):
        load_image_dataset(str(cifar10_path), "train", streaming=True, in_memory=True)
    with pytest.raises(ValueError, match="CIFAR-sized images"):
        load_image_dataset(str(cifar10_path), "train", image_size=64, in_memory=True)


def test_run_mixacm_smoke(tmp_path, cifar10_path):
    """run_mixacm.py: tiny natural teacher then a MixACM student, 512 images, a few steps; the folder loads back."""
    from training.run_mixacm import main

    common = ["--dataset", str(cifar10_path), "--max_train_samples", "512",
              "--per_device_train_batch_size", "32", "--max_steps", "3", "--report_to", "none", "--use_cpu", "true",
              "--save_strategy", "no", "--disable_tqdm", "true",
              "--eval_n", "16", "--eval_eps_sweep", "0,8/255"]  # fmt: skip
    main(["--student", "wrn-10-1", "--method", "natural", "--output_dir", str(tmp_path / "teacher"), *common])
    main(
        ["--config", str(REPO / "training" / "configs" / "cifar10_cpu_wrn16-2.yaml"), "--student", "wrn-10-1",
         "--teacher", str(tmp_path / "teacher"), "--output_dir", str(tmp_path / "student"), *common]
    )  # fmt: skip
    student = AutoModelForImageClassification.from_pretrained(tmp_path / "student").eval()
    assert student.config.id2label[0] == "airplane" and student.config.num_labels == 10
    assert student(torch.rand(2, 3, 32, 32)).logits.shape == (2, 10)
    summary = (tmp_path / "student" / "train_summary.json").read_text()
    assert '"method": "mixacm"' in summary and '"steps": 3' in summary and '"n_train": 512' in summary


def test_class_balanced_prefix_keeps_the_first_fraction_of_each_class_in_split_order():
    from mixacm_hf.data import class_balanced_prefix

    labels = [0, 1, 0, 2, 1, 0, 2, 0, 1, 2]  # class 0: rows 0 2 5 7; class 1: 1 4 8; class 2: 3 6 9
    assert class_balanced_prefix(labels, 0.5) == [0, 1, 2, 3, 4, 6]  # 2 of 4, round(1.5) = 2 of 3 each
    assert class_balanced_prefix(labels, 1.0) == list(range(10))
    with pytest.raises(ValueError, match=r"--train_fraction 0.1 keeps no image of class .* give at least 0.33"):
        class_balanced_prefix(labels, 0.1)  # round(0.4) = 0 of class 1 or 2; one of 3 images is 1/3
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        class_balanced_prefix(labels, 0.0)


def test_train_fraction_selects_the_same_balanced_images_in_every_pipeline(cifar10_path):
    per_image = load_image_dataset(str(cifar10_path), "train", fraction=0.01)
    in_memory = load_image_dataset(str(cifar10_path), "train", fraction=0.01, in_memory=True)
    assert len(per_image) == len(in_memory) == 500
    labels = per_image.with_format("numpy")["label"]
    assert np.bincount(labels).tolist() == [50] * 10
    assert torch.equal(in_memory.labels, torch.as_tensor(labels))
