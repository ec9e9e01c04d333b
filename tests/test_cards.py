"""Card writes in the Hub's real world: all-or-nothing updates, string values of foreign cards, concurrent updates,
honest dataset identity, and students of any architecture that load with `pipeline`."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, metadata_load
from PIL import Image

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.hub import cards as cards_module
from mixacm_hf.hub import folders as folders_module
from mixacm_hf.hub import load_reports, save_robust_model, update_model_card, write_model_card
from mixacm_hf.robustness import evaluate_robustness

REPO = Path(__file__).resolve().parents[1]
SUMMARY = {"method": "natural", "params": 77850, "epochs": 1.0, "train_seconds": 1.0, "backward_passes_per_image": 1}


@pytest.fixture(scope="module")
def model_and_report():
    torch.manual_seed(0)
    model = WideResNetForImageClassification(WideResNetConfig.from_name("wrn-10-1", num_labels=10)).eval()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    report = evaluate_robustness(
        model, (x, y), ["clean", "fgsm"], n_examples=8, eps_sweep=[0, 8 / 255], dataset_name="uoft-cs/cifar10",
        progress=False,
    )  # fmt: skip
    return model, report


@pytest.fixture
def folder(model_and_report, tmp_path):
    """A saved model whose card also holds a foreign result with string values ("61.2 ± 1.1", eps "8/255")."""
    model, report = model_and_report
    folder = tmp_path / "model"
    save_robust_model(model, folder, [report], SUMMARY)
    card = ModelCard.load(folder / "README.md")
    metadata = card.data.to_dict()
    metadata["model-index"][0]["results"][0]["metrics"].append(
        {"type": "accuracy", "value": "61.2 ± 1.1", "name": "Robust accuracy (their PGD)", "config": "their-pgd",
         "args": {"norm": "Linf", "eps": "8/255"}}
    )  # fmt: skip
    card = ModelCard(f"---\n{json.dumps(metadata)}\n---\n{card.text}")
    card.save(folder / "README.md")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_string_values_of_foreign_cards_are_kept_and_rendered_as_they_are(folder, model_and_report):
    update_model_card(folder, replace(model_and_report[1], clean_accuracy=0.625))
    metrics = metadata_load(folder / "README.md")["model-index"][0]["results"][0]["metrics"]
    foreign = next(metric for metric in metrics if metric["config"] == "their-pgd")
    assert foreign["value"] == "61.2 ± 1.1" and foreign["args"]["eps"] == "8/255"
    assert next(metric["value"] for metric in metrics if metric["config"] == "clean") == 62.5
    text = (folder / "README.md").read_text()
    assert "| their-pgd (`test` split; another card's value, in its own units) | Linf, eps=8/255 | 61.2 ± 1.1 |" in text


def test_a_foreign_fraction_is_shown_in_its_own_units_with_its_split(folder, model_and_report):
    """A plain Trainer's card gives accuracy as a fraction (0.0938): shown as it is, not as 0.09 in the % column."""
    card = ModelCard.load(folder / "README.md")
    metadata = card.data.to_dict()
    metadata["model-index"][0]["results"].append(
        {"task": {"type": "image-classification"}, "dataset": {"name": "cifar10", "type": "cifar10",
         "split": "validation"}, "metrics": [{"type": "accuracy", "value": 0.0938, "name": "Accuracy"}]}
    )  # fmt: skip
    ModelCard(f"---\n{json.dumps(metadata)}\n---\n{card.text}").save(folder / "README.md")
    update_model_card(folder, model_and_report[1])
    text = (folder / "README.md").read_text()
    assert "| Accuracy (`validation` split; another card's value, in its own units) | – | 0.0938 |" in text
    assert "| 0.09 |" not in text and "| Clean | – | " in text


def test_a_card_of_a_model_normalising_outside_shows_its_processor_in_the_snippet(model_and_report):
    from mixacm_hf.hub import create_model_card

    processor = {"do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.2] * 3}
    outside = create_model_card("m", [model_and_report[1]], config={"model_type": "resnet"}, processor=processor)
    assert "processor = AutoImageProcessor.from_pretrained(repo_id)" in outside.text
    assert 'logits = model(**processor(images, return_tensors="pt")).logits' in outside.text
    assert "in [0, 1]\n" not in outside.text
    inside = create_model_card(
        "m",
        [model_and_report[1]],
        config={
            "model_type": "wide_resnet",
            "depth": 10,
            "widen_factor": 1,
            "image_size": 32,
            "image_mean": [0.5] * 3,
            "image_std": [0.2] * 3,
        },
    )
    assert "logits = model(pixel_values).logits  # pixel_values: (batch, 3, 32, 32), in [0, 1]" in inside.text
    assert "AutoImageProcessor" not in inside.text


def test_failed_rendering_leaves_every_file_byte_identical(folder, model_and_report, monkeypatch):
    before = _snapshot(folder)
    shown = cards_module._shown

    def fail_on_strings(value, pattern="{}"):
        if isinstance(value, str) and "±" in value:
            raise TypeError(f"cannot render {value!r}")
        return shown(value, pattern)

    monkeypatch.setattr(cards_module, "_shown", fail_on_strings)
    with pytest.raises(TypeError, match="cannot render '61.2 ± 1.1'"):
        update_model_card(folder, replace(model_and_report[1], clean_accuracy=0.125))
    assert _snapshot(folder) == before  # the lock file of mixacm_hf.files.locked included: it is older


def test_failed_write_rolls_back_the_files_already_replaced(folder, model_and_report, monkeypatch):
    before = _snapshot(folder)
    write = folders_module.atomic_write_bytes
    attempts = []

    def fail_on_card(path, data):
        attempts.append(Path(path).name)
        if Path(path).name == "README.md":
            raise PermissionError(f"{path} is read-only")
        return write(path, data)

    monkeypatch.setattr(folders_module, "atomic_write_bytes", fail_on_card)
    with pytest.raises(PermissionError, match="read-only"):
        update_model_card(folder, replace(model_and_report[1], clean_accuracy=0.125))
    assert attempts[:5] == [  # replaced, then put back
        "robustness.json", "per_example.parquet", "robustness_vs_eps.png", "robustness.yaml", "README.md"
    ]  # fmt: skip
    assert _snapshot(folder) == before


WORKER = """
import sys
from dataclasses import replace
from pathlib import Path
from mixacm_hf.hub import update_model_card
from mixacm_hf.robustness import RobustnessReport

folder, tag = sys.argv[1], int(sys.argv[2])
base = RobustnessReport.from_json(Path(sys.argv[3]).read_text())
for i in range(50):  # no per-example records: they would contradict the accuracy set here
    update_model_card(folder, replace(base, seed=1000 * tag + i, clean_accuracy=(i % 8) / 8, per_example=None))
"""


def test_concurrent_updates_lose_nothing_and_keep_files_valid(folder, model_and_report, tmp_path):
    base = tmp_path / "base.json"
    base.write_text(replace(model_and_report[1], eps_sweep=None).to_json())
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [
        subprocess.Popen([sys.executable, str(script), str(folder), str(tag), str(base)], stderr=subprocess.PIPE)
        for tag in (1, 2)
    ]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-3000:]
    seeds = [report.seed for report in load_reports(folder)]
    assert len(seeds) == 101 and sorted(seeds[1:]) == [*range(1000, 1050), *range(2000, 2050)]
    card = ModelCard.load(folder / "README.md")
    values = {result.metric_config: result.metric_value for result in card.data.eval_results}
    assert values["clean"] == 100 * (49 % 8) / 8 and values["their-pgd"] == "61.2 ± 1.1"  # both ended with i = 49
    assert not [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]


def test_local_copy_is_named_as_itself_unless_the_user_names_the_hub_dataset(model_and_report, tmp_path):
    model, report = model_and_report
    copy = tmp_path / "my-cifar"
    copy.mkdir()
    (copy / "README.md").write_text("---\npretty_name: CIFAR-10 (PNG copy)\n---\nA copy.\n")
    (copy / "test.parquet").write_bytes(b"1234")
    local = replace(report, dataset={"name": str(copy), "split": "test", "revision": None})

    own = save_robust_model(model, tmp_path / "own", [local], SUMMARY)
    (result, *_) = own.data.eval_results
    assert (result.dataset_type, result.dataset_name) == ("my-cifar-local-copy", "CIFAR-10 (PNG copy)")
    assert len(result.dataset_revision) == 12 and own.data.datasets is None  # a local copy is no Hub dataset
    assert f"The data is `{copy}`, a local copy (CIFAR-10 (PNG copy), files fingerprint" in own.text
    assert f"--dataset {copy}" in own.text and "uoft-cs" not in own.text

    asserted = save_robust_model(model, tmp_path / "asserted", [local], SUMMARY, dataset_id="uoft-cs/cifar10")
    (result, *_) = asserted.data.eval_results
    assert (result.dataset_type, result.dataset_name) == ("uoft-cs/cifar10", "CIFAR-10 (PNG copy)")
    assert asserted.data.datasets == ["uoft-cs/cifar10"]
    assert f"`{copy}` is a local copy (CIFAR-10 (PNG copy), files fingerprint `{result.dataset_revision}`)" in (
        asserted.text
    )


def test_published_cards_make_no_hub_claim_for_the_local_copy():
    cards = [path for path in (Path(__file__).resolve().parents[1] / "model_cards").glob("*/README.md")]
    assert cards
    for path in cards:
        metadata = metadata_load(path)
        types = {result["dataset"]["type"] for result in metadata["model-index"][0]["results"]}
        assert types == {"cifar10-local-copy"}, path
        assert "uoft-cs/cifar10" not in metadata.get("datasets", []), path
        assert "files fingerprint" in path.read_text(), path


def test_hf_resnet_student_is_pipeline_ready_and_its_card_claims_no_normalisation(tmp_path, cifar10_path):
    from transformers import AutoModelForImageClassification, ResNetConfig, pipeline

    from training.run_mixacm import main as run_main

    spec = tmp_path / "resnet-tiny"
    ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic").save_pretrained(spec)
    output = tmp_path / "student"
    run_main(
        ["--student", str(spec), "--student_from_config", "true", "--method", "natural", "--dataset",
         str(cifar10_path), "--max_train_samples", "32", "--per_device_train_batch_size",
         "16", "--max_steps", "2", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
         "--disable_tqdm", "true", "--output_dir", str(output), "--eval_attacks", "clean,fgsm", "--eval_n", "8",
         "--eval_eps_sweep", ""]
    )  # fmt: skip
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["do_normalize"] is False and processor["size"] == {"height": 32, "width": 32}

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    classify = pipeline("image-classification", model=str(output))
    scores = classify(image, top_k=10, function_to_apply="none")  # raw logits, one per label
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        logits = model(pixels).logits[0]
    got = torch.tensor([next(s["score"] for s in scores if s["label"] == model.config.id2label[i]) for i in range(10)])
    assert torch.allclose(got, logits, atol=1e-4)

    text = (output / "README.md").read_text()
    assert "normalises them inside the model" not in text
    assert "no mean/std normalisation, neither inside the model nor in its image processor" in text
    params = sum(p.numel() for p in model.parameters())
    assert f"A ResNetForImageClassification image classifier ({params / 1e6:.2f}M parameters)" in text


def test_every_published_card_rerenders_to_the_committed_text(tmp_path):
    """Cards are rendered from their folder's robustness.json and train_summary.json only: re-rendering each
    published folder (as the reproduction publishes it) gives the committed README.md byte for byte."""
    import json
    import shutil

    published = [folder for folder in sorted((REPO / "model_cards").iterdir()) if (folder / "README.md").is_file()]
    assert len(published) >= 5
    for folder in published:
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        summary_file = copy / "train_summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
        reports = sorted(load_reports(copy), key=lambda report: report.n_examples)
        write_model_card(copy, reports, summary, repo_id=f"model_cards/{folder.name}")
        assert (copy / "README.md").read_text() == (folder / "README.md").read_text(), folder.name


def test_saving_a_model_keeps_the_normalisation_its_processor_applies(model_and_report, tmp_path):
    """An HF model that relies on its processor's mean/std keeps that processor when saved; without any processor
    and no normalisation inside, saving is refused before anything is written."""
    from transformers import AutoImageProcessor, ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    _, report = model_and_report
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10)
    source = tmp_path / "source"
    ResNetForImageClassification(config).eval().save_pretrained(source)
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2] * 3)
    processor.save_pretrained(source)
    model = ResNetForImageClassification.from_pretrained(source).eval()

    card = save_robust_model(model, tmp_path / "saved", [report], SUMMARY)
    saved = AutoImageProcessor.from_pretrained(tmp_path / "saved")
    assert saved.do_normalize and list(saved.image_mean) == [0.5, 0.4, 0.3] and list(saved.image_std) == [0.2] * 3
    assert "normalises the pixels outside the model (mean 0.5, 0.4, 0.3" in card.text

    bare = ResNetForImageClassification(config).eval()
    with pytest.raises(ValueError, match="Cannot tell how ResNetForImageClassification expects its pixels"):
        save_robust_model(bare, tmp_path / "bare", [report], SUMMARY)
    assert not (tmp_path / "bare").exists()


def test_the_sweep_table_shows_the_plotted_sweep_and_survives_updates_without_one(folder, model_and_report):
    """The card's budget-sweep table holds the values of the plotted report's sweep (eps as x/255, FGSM's row), and
    an update by a report without a sweep on fewer images keeps it."""
    report = model_and_report[1]
    fgsm = [f"{100 * value:.2f}" for value in report.eps_sweep["robust_accuracy"]["fgsm"]]
    expected = ["| Evaluation | 0/255 | 8/255 |", f"| FGSM | {' | '.join(fgsm)} |"]
    assert all(line in (folder / "README.md").read_text() for line in expected)
    update_model_card(folder, replace(report, eps_sweep=None, n_examples=4, seed=7))
    assert all(line in (folder / "README.md").read_text() for line in expected)


def test_each_methods_card_text_agrees_with_its_entry():
    """A card says what its method trains on: mixup images where the entry uses mixup, never where it does not; the
    soft labels and channel maps it names only where the entry uses them (or says it goes without them)."""
    from mixacm_hf.methods import METHODS

    for name, method in METHODS.items():
        text = method.card_text.lower()
        assert ("mixup images" in text) == method.uses_mixup, name
        if not method.uses_mixup and method.needs_teacher and not method.adversarial:
            assert "clean" in text, name  # distillation without mixup: on clean images
        if "channel map" in text:
            assert method.uses_acm or "no channel maps" in text, name
        if "soft label" in text or "soft-label" in text:
            assert method.uses_kld or "without the soft-label term" in text or method.adversarial, name


def test_a_teacher_of_unknown_robustness_is_said_to_be_so_for_its_kind(model_and_report, tmp_path):
    """A teacher folder without a card with results: no card at that path; a RobustBench entry (no path) without
    RobustBench's model information: that information is missing (it said "no model card ... at that path" before)."""
    model, report = model_and_report
    zoo_source = {
        "zoo": "robustbench", "spec": "robustbench:cifar10/Linf/Andriushchenko2020Understanding", "dataset": "cifar10",
        "threat_model": "Linf", "name": "Andriushchenko2020Understanding", "checkpoint": "models/x.pt",
        "sha256": "0" * 64, "robustbench_version": "1.1.1", "builder": "PreActResNet", "model_info": None,
    }  # fmt: skip
    missing = "RobustBench's model information on the entry is not in the installed package"
    for teacher, source, reason in (
        (str(tmp_path / "no-card"), None, "no model card with results was found at that path"),
        (zoo_source["spec"], zoo_source, missing),
    ):
        summary = {**SUMMARY, "method": "mixacm", "teacher": teacher, "teacher_source": source}
        save_robust_model(model, tmp_path / "model", [report], summary)
        text = " ".join(ModelCard.load(tmp_path / "model" / "README.md").text.split())
        assert f"Its own robust accuracy is not known here ({reason})." in text


def test_a_run_that_shared_the_machine_says_so_and_gives_the_leaderboard_no_cost(model_and_report, tmp_path):
    """A wall time measured beside other jobs is no cost: the card says so next to it, and the leaderboard's facts
    leave it out (its cost column then shows epochs and backward passes only)."""
    model, report = model_and_report
    for shared, folder in ((False, tmp_path / "alone"), (True, tmp_path / "shared")):
        save_robust_model(model, folder, [report], {**SUMMARY, "train_seconds": 5400.0, "shared_machine": shared})
        card = ModelCard.load(folder / "README.md")
        wall_time = next(line for line in card.text.splitlines() if line.startswith("| Wall time |"))
        facts = card.data.to_dict()["mixacm"]
        if shared:
            assert wall_time.endswith("(x1); trained beside other jobs: no cost measurement |")
            assert "train_seconds" not in facts
        else:
            assert "no cost measurement" not in wall_time and facts["train_seconds"] == 5400.0
