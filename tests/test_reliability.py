"""Nothing lost, nothing silently wrong (issue 19): images converted by bit depth in every pipeline, bad arguments,
splits, rows and teachers refused before training with messages naming them, a finished model never lost or
overwritten, and exact resume from any checkpoint."""

import io
import json
import logging
import struct
import zlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from mixacm_hf import MixACMTrainer, MixACMTrainingArguments, WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.cli import parse_with_config
from mixacm_hf.data import (
    collate_image_batch,
    image_to_pixels,
    image_transform,
    load_image_dataset,
)
from mixacm_hf.resume import resume_checkpoint
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser
from mixacm_hf.teachers import load_teacher
from mixacm_hf.trainer import AFFINE_MAPS_NAME

GRAY16 = np.array([[0, 257, 1000, 32768], [40000, 50000, 65000, 65535]] * 2, dtype=np.uint16)  # (4, 4)
RGB16 = np.stack([GRAY16, 65535 - GRAY16, np.full_like(GRAY16, 30000)], axis=-1)  # (4, 4, 3)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rgb16_png(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow cannot write one): signature, IHDR (bit depth 16, colour type 2), IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_dataset(folder: Path, splits: dict[str, list], labels: dict[str, list[int]] | None = None) -> Path:
    """Parquet splits of images (PIL images or PNG bytes) with a 10-class ClassLabel; `labels` are written as given
    (even outside the classes, as a file written by other tools may hold them)."""
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    folder.mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        values = [{"bytes": i, "path": None} if isinstance(i, bytes) else i for i in images]
        data = datasets.Dataset.from_dict({"img": values, "label": [i % 10 for i in range(len(images))]}, features)
        table = data.data.table
        if labels and split in labels:
            table = table.set_column(1, "label", pa.array(labels[split], pa.int64()))
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")
    return folder


def plain_images(n: int, size: int = 32) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def truncated_png(size: int = 32) -> bytes:
    data = png_bytes(plain_images(1, size)[0])
    return data[: len(data) // 2]


# -- images: one conversion by bit depth, in every pipeline --------------------------------------------------------


def test_16_bit_images_give_their_values_in_every_pipeline(tmp_path):
    gray, rgb = Image.fromarray(GRAY16), Image.open(io.BytesIO(rgb16_png(RGB16)))
    assert gray.mode == "I;16" and rgb.mode == "RGB"  # Pillow reads 48-bit PNGs as 8-bit RGB (the high bytes)
    expected_gray = torch.from_numpy(GRAY16 / 65535).float().expand(3, -1, -1)
    expected_rgb = torch.from_numpy(RGB16 / 65535).float().permute(2, 0, 1)
    assert torch.allclose(image_to_pixels(gray), expected_gray, atol=1e-6)
    assert torch.allclose(image_to_pixels(rgb), expected_rgb, atol=1 / 255)
    assert torch.allclose(image_transform(train=False, image_size=4)(gray), expected_gray, atol=1e-6)
    folder = write_dataset(tmp_path / "data", {"train": [png_bytes(gray), rgb16_png(RGB16)]})
    common = {"image_size": 4, "train": False}
    per_image = load_image_dataset(str(folder), "train", **common)
    in_memory = load_image_dataset(str(folder), "train", in_memory=True, **common)
    streamed = list(load_image_dataset(str(folder), "train", streaming=True, **common))
    for pipeline, atol in ((per_image, 1e-6), (in_memory, 0.5 / 255), (streamed, 1e-6)):
        assert torch.allclose(torch.as_tensor(pipeline[0]["pixel_values"]), expected_gray, atol=atol)
        assert torch.allclose(torch.as_tensor(pipeline[1]["pixel_values"]), expected_rgb, atol=1 / 255)
    assert expected_gray.max() == 1 and expected_gray[0, 0, 1] == pytest.approx(1 / 255)  # not clipped to white


@pytest.mark.parametrize("mode", ["I", "F"])
def test_modes_without_a_fixed_range_are_refused_by_name(mode):
    with pytest.raises(ValueError, match=f"mode '{mode}'"):
        image_to_pixels(Image.new(mode, (4, 4), 1000))


# -- bad splits and rows -------------------------------------------------------------------------------------------


def test_bad_rows_are_named_by_split_and_row_and_can_be_skipped(tmp_path, caplog):
    images = [png_bytes(image) for image in plain_images(6)]
    images[3] = truncated_png()
    folder = write_dataset(tmp_path / "data", {"train": images})
    per_image = load_image_dataset(str(folder), "train")
    assert per_image[2]["pixel_values"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="row 3 of the 'train' split"):
        per_image[3]
    with pytest.raises(ValueError, match="row 3 of the 'train' split.*--skip_bad_images"):
        load_image_dataset(str(folder), "train", in_memory=True)
    with caplog.at_level(logging.WARNING, logger="mixacm_hf.data"):
        skipped = load_image_dataset(str(folder), "train", skip_bad_images=True, in_memory=True)
    assert len(skipped) == 5 and "Skipping 1 of 6 rows of the 'train' split" in caplog.text
    assert skipped.labels.tolist() == [0, 1, 2, 4, 5]  # row 3 left out, the others in order
    assert len(list(load_image_dataset(str(folder), "train", streaming=True, skip_bad_images=True))) == 5


def test_labels_outside_the_classes_are_named_by_split_and_row(tmp_path):
    folder = write_dataset(tmp_path / "data", {"train": plain_images(4)}, {"train": [0, 1, 10, 3]})
    with pytest.raises(ValueError, match=r"'train' split are outside \[0, 10\) \(row 2: 10\)"):
        load_image_dataset(str(folder), "train")
    with pytest.raises(ValueError, match=r"'train' split are outside \[0, 10\) \(position \d of a batch: 10\)"):
        list(load_image_dataset(str(folder), "train", streaming=True))  # streams: checked batch by batch


def test_empty_split_and_zero_samples_are_refused(tmp_path):
    folder = write_dataset(tmp_path / "data", {"train": plain_images(2)})
    with pytest.raises(ValueError, match="max_samples=0 for the 'train' split"):
        load_image_dataset(str(folder), "train", max_samples=0)
    empty = write_dataset(tmp_path / "empty", {"train": plain_images(2), "test": []})
    with pytest.raises(ValueError, match="has an empty split: .*test-00000-of-00001.parquet"):
        load_image_dataset(str(empty), "test")


# -- arguments and teachers: refused before anything is loaded or trained ------------------------------------------


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--alpha_acm", "-5000"], "--alpha_acm -5000"),
        (["--mixup_alpha", "-1"], "--mixup_alpha -1"),
        (["--temperature", "0"], "--temperature 0"),
        (["--alpha_kld", "1.5"], "--alpha_kld 1.5"),
        (["--eval_eps", "8"], "--eval_eps: eps=8"),
        (["--eval_attacks", "clean,pgd-0"], "--eval_attacks: PGD needs steps and restarts >= 1, got 'pgd-0'"),
        (["--eval_eps_sweep", "0,8"], "--eval_eps_sweep: eps=8"),
        (["--max_train_samples", "0"], "--max_train_samples 0"),
        (["--eval_n", "0"], "--eval_n 0"),
    ],
)
def test_invalid_arguments_fail_before_any_loading(tmp_path, flags, named):
    argv = ["--teacher", str(tmp_path / "absent"), "--dataset", str(tmp_path / "absent"), *flags]
    with pytest.raises(ValueError) as error:  # the teacher and dataset do not exist: the flag is checked first
        run_mixacm(*parse_with_config(argument_parser(), ["--output_dir", str(tmp_path / "out"), *argv]))
    assert named in str(error.value)


def test_the_training_command_exits_nonzero_naming_a_bad_flag(tmp_path, capsys):
    from training.run_mixacm import main

    for flags, named in ((["--mixup_alpha", "-1"], "--mixup_alpha -1"), (["--eval_eps", "8"], "--eval_eps: eps=8")):
        with pytest.raises(SystemExit) as exit_:
            main(["--teacher", str(tmp_path), "--output_dir", str(tmp_path / "out"), *flags])
        assert str(exit_.value.code).startswith(f"error: {named}")
    assert not (tmp_path / "out").exists()


def test_teacher_errors_name_the_path_and_file(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="neither an existing folder or file nor a Hub id"):
        load_teacher(str(tmp_path / "no" / "such" / "teacher"))
    folder = tmp_path / "teacher"
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1")).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"Cannot read the weights in '{weights}'.*truncated or corrupt"):
        load_teacher(str(folder))
    from training.convert_teacher import main as convert

    with pytest.raises(SystemExit) as exit_:  # a truncated checkpoint file: a message naming it, no traceback
        convert([str(weights), "--arch", "standard-wrn-16-1", "--output", str(tmp_path / "converted")])
    assert exit_.value.code == 2 and f"Cannot read the weights in '{weights}'" in capsys.readouterr().err


# -- finished models: never lost, never overwritten ----------------------------------------------------------------


def tiny_run_argv(dataset: Path, output_dir: Path, *flags) -> list[str]:
    return ["--student", "wrn-10-1", "--method", "natural", "--dataset", str(dataset), "--output_dir", str(output_dir),
            "--max_steps", "1", "--per_device_train_batch_size", "4", "--use_cpu", "true", "--report_to", "none",
            "--save_strategy", "no", "--disable_tqdm", "true", "--eval_attacks", "clean", "--eval_eps_sweep", "",
            *flags]  # fmt: skip


def test_a_bad_test_image_stops_the_run_before_training(tmp_path):
    test_images = [png_bytes(image) for image in plain_images(4)]
    test_images[1] = truncated_png()
    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": test_images})
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="row 1 of the 'test' split"):
        run_mixacm(*parse_with_config(argument_parser(), tiny_run_argv(folder, out)))
    assert not (out / "model.safetensors").exists() and not (out / "train_summary.json").exists()


def test_a_failing_evaluation_leaves_the_saved_model_and_says_how_to_evaluate_it(tmp_path, monkeypatch):
    from mixacm_hf import run
    from training.run_mixacm import main

    def failing(*args, **kwargs):
        raise RuntimeError("the attack ran out of memory")

    monkeypatch.setattr(run, "evaluate_student", failing)
    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    with pytest.raises(run.EvaluationFailed, match=f"saved in {out}.*out of memory.*evaluate_robustness.py --model"):
        run_mixacm(*parse_with_config(argument_parser(), tiny_run_argv(folder, out)))
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    assert model(torch.rand(1, 3, 32, 32)).logits.shape == (1, 10)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 1
    with pytest.raises(SystemExit) as exit_:  # the script: exit status 1 and the message, no traceback
        main(tiny_run_argv(tmp_path / "data", tmp_path / "again"))
    assert str(exit_.value.code).startswith("error: The trained model is saved in")


def test_a_missing_split_is_named(tmp_path):
    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    with pytest.raises(ValueError, match=f"{folder} has no 'validation' split"):
        run_mixacm(
            *parse_with_config(argument_parser(), tiny_run_argv(folder, tmp_path / "out", "--eval_split", "validation"))
        )


def test_resuming_a_finished_run_from_its_last_checkpoint_is_refused_and_changes_nothing(tmp_path):
    folder = write_dataset(tmp_path / "data", {"train": plain_images(24), "test": plain_images(4)})
    out = tmp_path / "out"
    argv = tiny_run_argv(folder, out, "--save_strategy", "steps", "--save_steps", "2", "--max_steps", "2")
    run_mixacm(*parse_with_config(argument_parser(), argv))  # ends mid-epoch (6 steps an epoch)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(ValueError, match="nothing to resume"):
        run_mixacm(*parse_with_config(argument_parser(), [*argv, "--resume_from_checkpoint", "last"]))
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    # more steps would be another run (its schedule): refused too (tests/test_run_contract.py)
    with pytest.raises(ValueError, match="--max_steps 2 there, 3 now"):
        run_mixacm(
            *parse_with_config(argument_parser(), [*argv, "--resume_from_checkpoint", "last", "--max_steps", "3"])
        )
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_a_pretrained_student_with_other_classes_is_refused_before_training(tmp_path):
    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    student = tmp_path / "student"
    WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=5)).save_pretrained(student)
    argv = tiny_run_argv(folder, tmp_path / "out")
    argv[argv.index("wrn-10-1")] = str(student)
    with pytest.raises(ValueError, match="predicts 5 classes, the dataset has 10"):
        run_mixacm(*parse_with_config(argument_parser(), argv))
    assert not (tmp_path / "out").exists()


def test_a_second_run_into_a_finished_output_dir_exits_nonzero_and_leaves_it_untouched(tmp_path):
    from training.run_mixacm import main

    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    main(tiny_run_argv(folder, out))
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert out / "model.safetensors" in before and out / "README.md" in before
    for flags in (["--learning_rate", "0.5"], ["--resume_from_checkpoint", "last"]):  # no checkpoint to resume from
        with pytest.raises(SystemExit) as exit_:
            main(tiny_run_argv(folder, out, *flags))
        assert "already holds a finished model" in str(exit_.value.code) and exit_.value.code != 0
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


# -- the objective that ran ----------------------------------------------------------------------------------------


def test_the_recorded_objective_is_the_one_that_ran(tmp_path, tiny_wrn):
    args = MixACMTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], mixup_alpha=0.0, alpha_acm=100.0, max_steps=1
    )
    teacher = tiny_wrn("wrn-16-1", num_labels=100, seed=1)  # other classes: the KL term is dropped
    trainer = MixACMTrainer(model=tiny_wrn("wrn-10-1"), teacher_model=teacher, args=args)
    assert trainer.objective() == {
        "method": "mixacm", "loss_terms": {"loss_ce": 1.0, "loss_acm": 100.0}, "mixup_alpha": None, "kld_dropped": True,
    }  # fmt: skip
    from mixacm_hf.run import recorded_hyperparameters

    recorded = recorded_hyperparameters(args, trainer)
    assert recorded["mixup_alpha"] is None and recorded["alpha_kld"] is None and recorded["alpha_acm"] == 100.0


# -- exact resume --------------------------------------------------------------------------------------------------

RESUME_CASES = {
    "mixacm-adaptive_max_pool": {"method": "mixacm"},
    "mixacm-per-image-pipeline": {"method": "mixacm"},
    "mixacm-affine": {
        "method": "mixacm",
        "acm_channel_align": "affine",
        "acm_teacher_layers": [1, 2, 3],
        "acm_student_layers": [1, 2, 3],
    },  # fmt: skip
    "pgd-at": {"method": "pgd-at", "pgd_steps": 2},
}


def resume_trainer(
    tmp_path, tiny_wrn, output_dir: Path, settings: dict, callbacks=(), per_image: bool = False
) -> MixACMTrainer:
    """24 CIFAR-sized images (crop/flip; in memory or `per_image` PIL transforms), 3 steps an epoch, checkpoints every
    2 steps, 7 steps in all."""
    folder = tmp_path / "data"
    if not folder.is_dir():
        write_dataset(folder, {"train": plain_images(24)})
    data = load_image_dataset(str(folder), "train", seed=3, in_memory=not per_image)
    args = MixACMTrainingArguments(
        output_dir=str(output_dir), max_steps=7, per_device_train_batch_size=8, learning_rate=0.05, use_cpu=True,
        report_to=[], save_strategy="steps", save_steps=2, disable_tqdm=True, seed=3, mixup_alpha=1.0, **settings,
    )  # fmt: skip
    teacher = tiny_wrn("wrn-16-1", seed=1) if args.needs_teacher else None
    return MixACMTrainer(
        model=tiny_wrn("wrn-10-1", seed=0).train(), teacher_model=teacher, args=args, callbacks=list(callbacks),
        train_dataset=data, data_collator=collate_image_batch,
    )  # fmt: skip


class Crash(Exception):
    pass


class CrashAt:
    """A callback that stops the run like a kill at the end of a step (after the checkpoint of the step before)."""

    def __init__(self, step: int):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    raise Crash

        self.callback = _Callback()


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_from_a_mid_epoch_checkpoint_ends_with_identical_weights(tmp_path, tiny_wrn, case, caplog):
    settings, per_image = RESUME_CASES[case], "per-image" in case
    uninterrupted = resume_trainer(tmp_path, tiny_wrn, tmp_path / "uninterrupted", settings, per_image=per_image)
    uninterrupted.train()
    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        resume_trainer(tmp_path, tiny_wrn, out, settings, [CrashAt(5).callback], per_image).train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    if case == "mixacm-affine":
        assert (out / "checkpoint-4" / AFFINE_MAPS_NAME).is_file()
        (out / "checkpoint-4" / "trainer_state.json").unlink()  # as if killed while writing checkpoint-4
    args = MixACMTrainingArguments(output_dir=str(out), resume_from_checkpoint="last")
    with caplog.at_level(logging.WARNING, logger="mixacm_hf.run"):
        checkpoint = resume_checkpoint(args)
    expected = "checkpoint-2" if case == "mixacm-affine" else "checkpoint-4"  # 4 is mid-epoch (3 steps an epoch)
    assert Path(checkpoint).name == expected
    assert ("Skipping" in caplog.text) == (case == "mixacm-affine")
    resumed = resume_trainer(tmp_path, tiny_wrn, out, settings, per_image=per_image)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 7
    final, reference = resumed.model.state_dict(), uninterrupted.model.state_dict()
    different = [name for name in reference if not torch.equal(final[name], reference[name])]
    assert not different, f"{len(different)} of {len(reference)} tensors differ after resuming: {different[:3]}"
    if case == "mixacm-affine":
        for resumed_map, reference_map in zip(resumed.affine_maps.parameters(), uninterrupted.affine_maps.parameters()):
            assert torch.equal(resumed_map, reference_map)


def test_per_example_records_keep_the_split_rows_when_bad_rows_are_skipped(tmp_path):
    from mixacm_hf.robustness import evaluate_robustness

    images = [png_bytes(image) for image in plain_images(5)]
    images[1] = truncated_png()
    folder = write_dataset(tmp_path / "data", {"train": plain_images(4), "test": images})
    dataset = load_image_dataset(str(folder), "test", train=False, skip_bad_images=True)
    torch.manual_seed(0)
    model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).eval()
    report = evaluate_robustness(model, dataset, ["clean"], progress=False, device="cpu")
    assert report.per_example["index"] == [0, 2, 3, 4]  # row 1 left out, the others keep their numbers
    with torch.no_grad():
        expected = [bool(model(dataset[i]["pixel_values"][None]).logits.argmax(1) == dataset[i]["labels"])
                    for i in range(4)]  # fmt: skip
    assert report.per_example["clean"] == expected


def test_a_second_run_into_an_output_dir_in_use_is_refused_before_any_work(tmp_path):
    """Two runs into one --output_dir would overwrite each other's checkpoints: while one holds it (the lock goes with
    its process), another exits naming the flag, and writes nothing there; once it is free, the run goes ahead."""
    from mixacm_hf.files import locked
    from training.run_mixacm import main

    folder = write_dataset(tmp_path / "data", {"train": plain_images(8), "test": plain_images(4)})
    out = tmp_path / "out"
    with locked(out, timeout=0):  # as the other run holds it
        with pytest.raises(SystemExit) as exit_:
            main(tiny_run_argv(folder, out))
    assert f"--output_dir {out} is in use by another run" in str(exit_.value.code)
    assert not out.exists()
    main(tiny_run_argv(folder, out))
    assert (out / "model.safetensors").is_file()


def test_holding_an_output_dir_refuses_only_the_second_holder_not_the_bodys_own_errors(tmp_path):
    """Only taking the lock is refused ("in use"); a lock timeout inside the run (a card lock, say) passes as it is,
    and the folder is free again afterwards."""
    from filelock import Timeout

    from mixacm_hf.files import held_alone

    out = tmp_path / "out"
    with pytest.raises(Timeout):
        with held_alone(out, "--output_dir"):
            raise Timeout(str(tmp_path / "card.lock"))
    with held_alone(out, "--output_dir"):
        with pytest.raises(BlockingIOError, match=f"--output_dir {out} is in use by another run"):
            with held_alone(out, "--output_dir"):
                pass
