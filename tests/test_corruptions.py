"""Common corruptions as an evaluation (issue 36, item 3): the 15 corruptions at severities 1-5, generated with
imagecorruptions or read from a folder in the published CIFAR-10-C layout, kept apart from the L-norm threat models in
the report, the card's `.eval_results` and the leaderboard. Tiny models on 32x32 images (imagecorruptions' minimum)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import parse_eval_result_entries
from torch import nn

from mixacm_hf.hub import write_model_card
from mixacm_hf.hub.leaderboard import leaderboard
from mixacm_hf.hub.leaderboard_format import comparisons, format_leaderboard
from mixacm_hf.robustness import evaluate_robustness
from mixacm_hf.robustness.corruptions import CORRUPTIONS, SEVERITIES, summarise

SIZE, CLASSES = 32, 10
CENTRES = torch.linspace(0, 1, CLASSES)
pytestmark = pytest.mark.usefixtures("single_thread")


class Brightness(nn.Module):
    """Classifies an image by its mean intensity: class k for a mean near k/9 (an image filled with k/9 is class k)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.mean((1, 2, 3))[:, None] - CENTRES.to(x.device)).abs()


class Constant(nn.Module):
    """Constant logits (class 3 always): invariant to any corruption."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(CLASSES, dtype=torch.float32) == 3, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.float().expand(len(x), CLASSES) + 0 * x.flatten(1)[:, :1]


class Exploding(nn.Module):
    """A model that must never run: refusals come before any work."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model ran")


def filled(classes: list[int]) -> np.ndarray:
    """uint8 (N, 32, 32, 3) images, image i filled with the intensity of class classes[i]."""
    values = np.round(CENTRES.numpy()[classes] * 255).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (len(classes), SIZE, SIZE, 3)).copy()


SUMMARY = {"method": "natural", "params": 10, "epochs": 1.0, "train_seconds": 1.0, "backward_passes_per_image": 1}
LABELS = [0, 2, 5, 7]  # the split's labels; image i of the clean split is filled with class LABELS[i]


def clean_split() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(filled(LABELS)).permute(0, 3, 1, 2).contiguous(), torch.tensor(LABELS)


def correct_in_files(corruption: int, severity: int, n: int) -> int:
    """How many images of (corruption, severity) the published test folder makes right for `Brightness`."""
    return (corruption + severity) % (n + 1)


def published_folder(root: Path, n: int = len(LABELS)) -> Path:
    """A folder in the CIFAR-10-C layout of `n` images per severity: in severity s of corruption c, the first
    `correct_in_files(c, s, n)` images are filled with their label's intensity, the others with the next class's;
    labels.npy holds the labels of each severity block (5 n), as CIFAR-10-C's does."""
    root.mkdir()
    labels = LABELS[:n]
    for c, name in enumerate(CORRUPTIONS):
        blocks = []
        for severity in SEVERITIES:
            right = correct_in_files(c, severity, n)
            blocks.append(filled([y if i < right else (y + 1) % CLASSES for i, y in enumerate(labels)]))
        np.save(root / f"{name}.npy", np.concatenate(blocks))
    np.save(root / "labels.npy", np.tile(np.array(labels, dtype=np.int64), len(SEVERITIES)))
    return root


def sha256_of(folder: Path) -> dict[str, str]:
    """sha256 of each file of `folder`, by name, in the order an evaluation of all 15 corruptions reads them."""
    names = [*(f"{name}.npy" for name in CORRUPTIONS), "labels.npy"]
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


def evaluate(model: nn.Module, attacks: list[str], **options):
    options = {"dataset_name": "uoft-cs/cifar10", **options}
    return evaluate_robustness(
        model, clean_split(), attacks, device="cpu", progress=False, channels_last=False, batch_size=2, **options
    )


def random_split(labels: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """3 random images, labelled `labels` or as `Brightness` classifies them (clean accuracy 1)."""
    images = (torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return images, torch.tensor(labels) if labels else Brightness()(images.float() / 255).argmax(1)


def test_generated_corruptions_give_one_accuracy_per_corruption_and_severity_and_their_mean():
    """imagecorruptions' images of the evaluated ones: 15 x 5 accuracies, a mean that is their average, recorded as
    generated (never the published set); no eps ball (noise leaves an 8/255 ball), no eps sweep, not in "all"."""
    pytest.importorskip("imagecorruptions")
    report = evaluate_robustness(
        Brightness(), random_split(), ["clean", "pgd-5", "corruptions"], eps_sweep=[0.0, 8 / 255], device="cpu",
        progress=False, channels_last=False, batch_size=2, dataset_name="uoft-cs/cifar10",
    )  # fmt: skip
    result = report.corruptions["corruptions"]
    assert list(result["accuracy"]) == list(CORRUPTIONS) and all(len(row) == 5 for row in result["accuracy"].values())
    values = [value for row in result["accuracy"].values() for value in row]
    assert all(value in (0, 1 / 3, 2 / 3, 1) for value in values)
    assert result["mean"] == pytest.approx(sum(values) / 75) and report.robust_accuracy["corruptions"] == result["mean"]
    assert result["per_corruption"] == {name: pytest.approx(sum(row) / 5) for name, row in result["accuracy"].items()}
    assert list(result["per_severity"]) == ["1", "2", "3", "4", "5"]
    settings = report.attacks["corruptions"]
    assert settings["source"] == "generated" and settings["benchmark"] == "cifar10-c-generated"
    assert "eps" not in settings and "norm" not in settings and "not comparable" in settings["parameters"]
    assert "frost photographs" in settings["frost"] and "parameters unchanged" in settings["adapted"]
    assert "corruptions" not in report.per_example and "corruptions" not in report.intervals
    assert "corruptions" not in report.eps_sweep["robust_accuracy"] and report.flags == []
    assert not any("corruptions" in check["name"] for check in report.sanity_checks)
    assert report.robust_accuracy["all"] == sum(report.per_example["all"]) / 3  # clean and pgd-5 only
    assert "corruptions per severity 1-5" in report.summary()
    again = evaluate_robustness(
        Brightness(), random_split(), ["clean", "corruptions:impulse_noise+glass_blur+frost"], device="cpu",
        progress=False, channels_last=False, batch_size=2,
    )  # fmt: skip
    subset = again.corruptions["corruptions:impulse_noise+glass_blur+frost"]["accuracy"]
    assert subset == {name: result["accuracy"][name] for name in subset}  # the same seeded images
    lines = [line.split(":")[0].strip() for line in report.summary().splitlines()[1:]]
    assert lines[:4] == ["clean", "pgd-5", "corruptions", "all"]
    lines = [line.split(":")[0].strip() for line in again.summary().splitlines()[1:]]
    assert "all" not in lines and lines[:2] == ["clean", "corruptions"]  # the worst case over no attack is clean
    assert "no attack in an eps ball" in again.summary() and "eps=" not in again.summary().splitlines()[0]
    assert "Linf eps=8/255" in report.summary().splitlines()[0]


def test_a_model_invariant_to_corruptions_gets_its_clean_accuracy():
    pytest.importorskip("imagecorruptions")
    report = evaluate_robustness(
        Constant(), random_split([3, 1, 3]), ["clean", "corruptions"], device="cpu", progress=False, channels_last=False
    )
    assert report.clean_accuracy == pytest.approx(2 / 3)
    result = report.corruptions["corruptions"]
    assert all(row == [pytest.approx(2 / 3)] * 5 for row in result["accuracy"].values())
    assert result["mean"] == pytest.approx(2 / 3) and report.flags == []


def test_a_folder_in_the_published_layout_is_read_severity_by_severity(tmp_path):
    """Severity s of each corruption is rows (s - 1) N ... s N - 1, N taken from the files (4 here, 10,000 in
    CIFAR-10-C); the first n of each block are evaluated."""
    folder = published_folder(tmp_path / "c10c")
    for n in (4, 3):
        report = evaluate(Brightness(), ["clean", "corruptions"], corruptions_dir=folder, n_examples=n)
        expected = {
            name: [min(correct_in_files(c, s, 4), n) / n for s in SEVERITIES] for c, name in enumerate(CORRUPTIONS)
        }
        assert report.clean_accuracy == 1 and report.corruptions["corruptions"] == summarise(expected)
        settings = report.attacks["corruptions"]
        assert settings.pop("files").startswith("read from a folder in the published CIFAR-10-C layout; the layout")
        assert settings == {"type": "corruptions", "benchmark": "cifar10-c", "corruptions": list(CORRUPTIONS),
                            "severities": [1, 2, 3, 4, 5], "source": "published", "dir": "c10c",
                            "images_per_severity": 4, "sha256": sha256_of(folder)}  # fmt: skip
    assert report.flags == []


def test_a_resumed_evaluation_refuses_files_with_other_contents(tmp_path):
    """The files are identified by their contents (sha256), not their path: progress kept for one copy is not reused
    for other images under the same name."""
    folder = published_folder(tmp_path / "c10c")
    evaluate(Brightness(), ["clean", "corruptions:snow"], corruptions_dir=folder, resume_dir=tmp_path / "progress")
    snow = np.load(folder / "snow.npy")
    np.save(folder / "snow.npy", 255 - snow)
    with pytest.raises(ValueError, match=r"holds the progress of an evaluation with other settings"):
        evaluate(Brightness(), ["clean", "corruptions:snow"], corruptions_dir=folder, resume_dir=tmp_path / "progress")


def test_a_bad_folder_or_too_many_images_is_refused_before_any_work(tmp_path):
    folder = published_folder(tmp_path / "c10c")
    with pytest.raises(ValueError, match=r"holds 4 images per severity, fewer than the 5 to evaluate"):
        evaluate_robustness(Exploding(), (torch.zeros(5, 3, SIZE, SIZE), torch.zeros(5, dtype=torch.long)),
                            ["clean", "corruptions"], corruptions_dir=folder, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"labels\.npy differs from the evaluated split's labels on 4 of the first 4"):
        evaluate_robustness(Exploding(), (torch.zeros(4, 3, SIZE, SIZE), torch.full((4,), 9)),
                            ["clean", "corruptions"], corruptions_dir=folder, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"no corruptions evaluation is among the attacks: add corruptions"):
        evaluate(Exploding(), ["clean", "pgd-5"], corruptions_dir=folder)
    np.save(folder / "fog.npy", np.zeros((7, SIZE, SIZE, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"fog\.npy is uint8 \(7, 32, 32, 3\); it must be uint8 \(5 N, H, W, 3\)"):
        evaluate(Exploding(), ["clean", "corruptions"], corruptions_dir=folder)
    (folder / "fog.npy").unlink()
    with pytest.raises(ValueError, match=r"c10c lacks fog\.npy: it must hold the CIFAR-10-C layout"):
        evaluate(Exploding(), ["clean", "corruptions"], corruptions_dir=folder)
    report = evaluate(Brightness(), ["clean", "corruptions:snow"], corruptions_dir=folder)  # fog is not needed
    assert list(report.corruptions["corruptions:snow"]["accuracy"]) == ["snow"]


def test_unreadable_files_and_labels_of_another_order_in_a_later_severity_are_refused_naming_them(tmp_path):
    folder = published_folder(tmp_path / "c10c")
    (folder / "snow.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match=r"c10c: snow\.npy is not a readable \.npy array of numbers \(it holds "
                       r"pickled objects\); .* replace it with the published file\.$"):  # fmt: skip
        evaluate(Exploding(), ["clean", "corruptions:snow"], corruptions_dir=folder)
    np.save(folder / "snow.npy", np.array([None] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"snow\.npy is not a readable \.npy array of numbers \(it holds pickled"):
        evaluate(Exploding(), ["clean", "corruptions:snow"], corruptions_dir=folder)
    (folder / "fog.npy").write_bytes((folder / "fog.npy").read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match=r"fog\.npy is not a readable \.npy array of numbers \(mmap length"):
        evaluate(Exploding(), ["clean", "corruptions:fog"], corruptions_dir=folder)
    labels = np.tile(np.array(LABELS, dtype=np.int64), len(SEVERITIES))
    labels[-len(LABELS) :] = np.roll(LABELS, 1)  # severity 5 holds the images in another order
    np.save(folder / "labels.npy", labels)
    with pytest.raises(ValueError, match=r"labels\.npy differs from the evaluated split's labels on 4 of the first "
                       r"4 images of severity 5"):  # fmt: skip
        evaluate(Exploding(), ["clean", "corruptions:frost"], corruptions_dir=folder)
    np.save(folder / "labels.npy", np.array(LABELS, dtype=np.int64))  # N labels: the same for every severity
    assert evaluate(Brightness(), ["clean", "corruptions:frost"], corruptions_dir=folder).n_examples == len(LABELS)


def test_cards_eval_results_and_leaderboard_keep_corruptions_apart_from_linf(tmp_path):
    """Each corruptions source is its own model-index entry and `.eval_results` task id (`cifar10-c`,
    `cifar10-c-generated`) and its own leaderboard table, ranked by mean corruption accuracy, never with Linf."""
    pytest.importorskip("imagecorruptions")
    files = published_folder(tmp_path / "c10c")
    folders, means = [], {}
    for name, model in (("bright", Brightness()), ("constant", Constant())):
        published = evaluate(model, ["clean", "pgd-5", "corruptions"], corruptions_dir=files)
        generated = evaluate(model, ["clean", "corruptions"])
        means[name] = round(100 * published.robust_accuracy["corruptions"], 2)
        folder = tmp_path / name
        folder.mkdir()
        write_model_card(folder, [published, generated], SUMMARY)
        folders.append(folder)
        (path,) = (folder / ".eval_results").glob("*.yaml")
        entries = {entry.task_id: entry for entry in parse_eval_result_entries(yaml.safe_load(path.read_text()))}
        assert list(entries) == ["clean", "linf-8-255-pgd-5", "cifar10-c", "cifar10-c-generated"]
        assert entries["cifar10-c"].value == means[name]
        notes = json.loads(entries["cifar10-c-generated"].notes)
        assert notes["args"]["source"] == "generated" and len(notes["args"]["per_corruption"]) == 15
        assert "not comparable with published CIFAR-10-C numbers" in (folder / "README.md").read_text()
        assert (folder / "per_example.parquet").is_file()  # clean and pgd-5; corruptions have no column
    assert means["constant"] == 0 < means["bright"]  # class 3 is none of the labels
    board = leaderboard(folders)
    tables = {table.title: table for table in board.tables}
    assert sorted(tables) == [
        "uoft-cs/cifar10, test split, Linf, eps=8/255",
        "uoft-cs/cifar10, test split, common corruptions cifar10-c",
        "uoft-cs/cifar10, test split, common corruptions cifar10-c-generated (generated with imagecorruptions: not "
        "comparable with published CIFAR-10-C)",
    ]
    linf = tables["uoft-cs/cifar10, test split, Linf, eps=8/255"]
    assert not linf.corruptions and all(row.autoattack is None for row in linf.rows)  # no AutoAttack was run
    published = tables["uoft-cs/cifar10, test split, common corruptions cifar10-c"]
    assert published.corruptions and [row.model for row in published.rows] == ["bright", "constant"]
    assert [row.autoattack.value for row in published.rows] == [means["bright"], means["constant"]]
    assert comparisons(published) == {} and board.notes == []
    assert "| Mean corruption accuracy (%) |" in format_leaderboard(board)
    only = leaderboard(folders, threat_model="corruptions")
    assert len(only.tables) == 2 and all(table.corruptions for table in only.tables)


def test_the_command_line_refuses_a_bad_corruptions_dir_naming_its_flags(tmp_path):
    from training.evaluate_robustness import main

    folder = published_folder(tmp_path / "c10c")
    (folder / "snow.npy").unlink()
    argv = ["--model", str(tmp_path / "model"), "--dataset", str(tmp_path / "data"), "--corruptions_dir", str(folder)]
    with pytest.raises(SystemExit, match=r"^error: --corruptions_dir \S+c10c lacks snow\.npy: .* leave "
                                         r"--corruptions_dir out to generate the corruptions\.$"):  # fmt: skip
        main([*argv, "--attacks", "clean,corruptions"])
    with pytest.raises(SystemExit, match=r"^error: --corruptions_dir is given, but --attacks has no corruptions"):
        main([*argv, "--attacks", "clean,pgd-20"])
    with pytest.raises(SystemExit, match=r"holds 4 images per severity, fewer than the 5 to evaluate"):
        main([*argv, "--attacks", "clean,corruptions:fog", "--n_examples", "5"])


def test_worker_processes_generate_the_same_corruptions():
    """Each batch is corrupted with its own seed, so worker processes give the accuracies of one process."""
    pytest.importorskip("imagecorruptions")
    options = {"device": "cpu", "progress": False, "channels_last": False, "batch_size": 1}
    attacks = ["clean", "corruptions:glass_blur+impulse_noise+fog"]
    one = evaluate_robustness(Brightness(), random_split(), attacks, **options)
    two = evaluate_robustness(Brightness(), random_split(), attacks, workers=2, **options)
    assert two.processes == 2 and two.corruptions == one.corruptions


def test_an_eps_sweep_of_corruptions_alone_is_left_out_with_a_warning():
    """Corruptions have no budget: a sweep over them alone would be empty (with an empty plot and a check that tests
    nothing), so it is left out, saying so."""
    pytest.importorskip("imagecorruptions")
    with pytest.warns(UserWarning, match="eps_sweep left out: none of the attacks has a budget"):
        report = evaluate_robustness(
            Brightness(), random_split(), ["clean", "corruptions:fog"], eps_sweep=[0.0, 4 / 255], device="cpu",
            progress=False, channels_last=False, batch_size=3,
        )  # fmt: skip
    assert report.eps_sweep is None and not any("sweep" in check["name"] for check in report.sanity_checks)
    assert len(report.corruptions["corruptions:fog"]["accuracy"]["fog"]) == 5


def test_a_subset_of_corruptions_has_a_task_id_of_its_own():
    """A subset is another measurement than the whole benchmark: it must not be read on the Hub as `cifar10-c`."""
    from mixacm_hf.hub.eval_results import task_id

    published, generated = (
        {"type": "corruptions", "benchmark": "cifar10-c"},
        {"type": "corruptions", "benchmark": "cifar10-c-generated"},
    )
    assert task_id("corruptions", published) == "cifar10-c"
    assert task_id("corruptions:fog+snow", published) == "cifar10-c-fog-snow"
    assert task_id("corruptions:glass_blur", generated) == "cifar10-c-generated-glass-blur"
