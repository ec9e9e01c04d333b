"""Scale-out: 2-process DDP launches of training/run_mixacm.py (CIFAR-10; a streamed dataset in the ImageNet schema),
kill-and-resume, mixed precision, and the accelerate / paper configs."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from conftest import CIFAR10
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from test_trainer import make_trainer
from torchvision.transforms.v2 import functional as TF
from transformers import AutoModelForImageClassification, ResNetConfig, ResNetForImageClassification, get_scheduler

from mixacm_hf import WideResNetConfig, WideResNetForImageClassification
from mixacm_hf.cli import parse_with_config
from mixacm_hf.data import collate_image_batch, image_transform, load_image_dataset
from mixacm_hf.losses import acm_loss, activated_channel_map, kd_loss
from mixacm_hf.provenance import code_commit
from mixacm_hf.run_args import argument_parser
from mixacm_hf.students import load_student

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = sorted((REPO / "training" / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "training" / "accelerate").glob("*.yaml"))


def two_cpu_processes() -> list[str]:
    """accelerate's 2-process CPU launcher (training/accelerate/cpu_2proc.yaml) on a free port of its own: the
    module's runs start together, and on one default port they would take each other's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ["--config_file", "training/accelerate/cpu_2proc.yaml", "--main_process_port", str(port)]
    return [str(BIN / "accelerate"), "launch", *config]


COMMON = ["--student", "wrn-10-1", "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true",
          "--log_level", "info", "--logging_steps", "1", "--eval_attacks", "", "--eval_eps_sweep", ""]  # fmt: skip
# The end-of-run evaluation of the multi-process runs (overrides COMMON's): small batches, so both processes attack.
EVALUATED_ATTACKS = "clean,fgsm,pgd-3"
EVALUATED = ["--eval_attacks", EVALUATED_ATTACKS, "--eval_eps_sweep", "0,4/255", "--eval_batch_size", 8]

# training/run_mixacm.py with a probe: every process writes the ids of the images it trained on (the test images are
# plain colours whose red level is 4 x id) and its final student weights; KILL_AT_STEP makes it SIGKILL itself.
PROBED_RUN = """
import json, os, signal, sys
from pathlib import Path
from safetensors.torch import save_file
from transformers import TrainerCallback
from mixacm_hf.cli import parse_with_config
from mixacm_hf.run import run_mixacm
from mixacm_hf.run_args import argument_parser


class Probe(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.ids = []
        self.hook = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, inputs, kwargs):
        self.ids += (kwargs["pixel_values"][:, 0, 0, 0] * 255 / 4).round().int().tolist()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ.get("KILL_AT_STEP", -1)):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.hook.remove()
        out = Path(args.output_dir, f"rank{args.process_index}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}.safetensors")
        Path(f"{out}.json").write_text(json.dumps({"ids": self.ids, "steps": state.global_step}))


if "FAIL_EVALUATION_ON_RANK" in os.environ:  # that process's first attacked batch raises: the others must not hang
    from mixacm_hf.robustness.batches import AttackRun

    def failing_batch(self, spec, eps, index):
        if int(os.environ.get("RANK", 0)) == int(os.environ["FAIL_EVALUATION_ON_RANK"]):
            raise RuntimeError(f"injected failure in batch {index}")
        return batch(self, spec, eps, index)

    batch, AttackRun.run_batch = AttackRun.run_batch, failing_batch

if "RECORD_PUSHES" in os.environ:  # the Hub is offline: each process that pushes leaves a file instead
    import mixacm_hf.run

    def record_push(folder, repo_id, private, token):
        Path(folder, f"pushed-by-rank{os.environ.get('RANK', 0)}").write_text(repo_id)
        return f"https://huggingface.co/{repo_id}/commit/0"

    mixacm_hf.run.push_robust_model = record_push

run_mixacm(*parse_with_config(argument_parser(), sys.argv[1:]), callbacks=[Probe()])
"""


class Run(NamedTuple):
    """A started training run: its launcher process, output folder and log file."""

    process: subprocess.Popen
    output_dir: Path
    log: Path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The probed script, two tiny teachers (WRN-16-1 at 32 px: its weights differ in keys from the WRN-10-1
    students', so a saved teacher would show; WRN-10-1 at 56 px) and a small dataset in the ILSVRC/imagenet-1k schema
    (`image`, `label`): 64 plain-colour 64x64 images (red level = 4 x id) in 4 parquet train shards, and a validation
    split."""
    root = tmp_path_factory.mktemp("scale_out")
    (root / "probed_run.py").write_text(PROBED_RUN)
    torch.manual_seed(1)
    for name, size in (("wrn-16-1", 32), ("wrn-10-1", 56)):
        config = WideResNetConfig.from_name(name, num_labels=10, image_size=size)
        WideResNetForImageClassification(config).save_pretrained(root / f"teacher-{size}")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    images = [Image.fromarray(np.full((64, 64, 3), (4 * i, 255 - 4 * i, 0), dtype=np.uint8)) for i in range(64)]
    dataset = datasets.Dataset.from_dict({"image": images, "label": [i % 10 for i in range(64)]}, features)
    data = root / "imagenet-like"
    for shard in range(4):
        dataset.shard(4, shard, contiguous=True).to_parquet(data / f"train-0000{shard}-of-00004.parquet")
    dataset.select(range(16)).to_parquet(data / "validation-00000-of-00001.parquet")
    return root


def start(
    launcher: list[str], workdir: Path, name: str, args: list, kill_at_step: int | None = None, env: dict | None = None
) -> Run:
    """Start the probed training script under `launcher`, writing to `workdir / name` (its log: `name.log`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    if kill_at_step is not None:
        env["KILL_AT_STEP"] = str(kill_at_step)
    command = [*launcher, str(workdir / "probed_run.py"), *COMMON, "--output_dir", workdir / name, *args]
    with open(workdir / f"{name}.log", "w") as log:
        process = subprocess.Popen(
            list(map(str, command)), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Run(process, workdir / name, workdir / f"{name}.log")


# Other methods killed and resumed the same way: the randomness each draws (mixup, adversarial random starts) and the
# state it keeps must come back too.
RESUMED_VARIANTS = {
    "mixacm-adaptive-max-pool": ["--teacher", "{teacher}", "--acm_channel_align", "adaptive_max_pool"],
    "pgd-at": ["--method", "pgd-at", "--pgd_steps", 2],
}


def resume_run(workdir: Path, name: str, kill_at_step: int | None = None, variant: str | None = None) -> Run:
    """One process, MixACM with affine channel maps (or a `RESUMED_VARIANTS` setting) on in-memory images
    (crop/flip), 3 steps per epoch, checkpoints every 2 steps (2 kept), resuming from the newest complete one."""
    settings = ["--teacher", workdir / "teacher-32", "--acm_channel_align", "affine"]
    if variant is not None:
        settings = [workdir / "teacher-32" if a == "{teacher}" else a for a in RESUMED_VARIANTS[variant]]
    args = [
        "--dataset", CIFAR10, "--max_train_samples", 24, "--eval_n", 8, "--per_device_train_batch_size", 8,
        "--max_steps", 10, "--save_strategy", "steps", "--save_steps", 2, "--save_total_limit", 2,
        "--in_memory_images", "true", "--resume_from_checkpoint", "last", *settings,
    ]  # fmt: skip
    return start([sys.executable], workdir, name, args, kill_at_step)


def two_process_resume_run(workdir: Path, name: str, kill_at_step: int | None = None) -> Run:
    """2 processes (accelerate), MixACM on in-memory images, 6 steps per epoch, checkpoints every 2 steps, resuming
    from the newest; the end-of-run evaluation on."""
    args = [
        "--teacher", workdir / "teacher-32", "--dataset", CIFAR10, "--max_train_samples", 48, "--eval_n", 16,
        "--per_device_train_batch_size", 4, "--max_steps", 8, "--save_strategy", "steps", "--save_steps", 2,
        "--in_memory_images", "true", "--resume_from_checkpoint", "last", *EVALUATED,
    ]  # fmt: skip
    return start(two_cpu_processes(), workdir, name, args, kill_at_step)


@pytest.fixture(scope="module")
def runs(workdir) -> Iterator[dict[str, Run]]:
    """The module's training runs, started together: they are mostly interpreter start-up, which overlaps."""
    stream = [
        "--teacher", workdir / "teacher-56", "--dataset", workdir / "imagenet-like", "--streaming", "true",
        "--image_size", 56, "--eval_split", "validation", "--mixup_alpha", 0, "--max_steps", 4,
        "--per_device_train_batch_size", 8, "--save_strategy", "no", *EVALUATED,
    ]  # fmt: skip
    started = {
        "stream": start([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", 2], workdir, "stream", stream)
    }
    if (CIFAR10 / "plain_text").is_dir():  # else the tests that need them skip (the cifar10_path fixture)
        ddp = [
            "--teacher", workdir / "teacher-32", "--dataset", CIFAR10, "--max_train_samples", 64,
            "--eval_n", 37, "--per_device_train_batch_size", 4, "--gradient_accumulation_steps", 2,
            "--max_steps", 3, "--save_strategy", "no",
        ]  # fmt: skip
        pushed = ["--push_to_hub", "true", "--hub_model_id", "someone/ddp-student"]
        started["ddp"] = start(
            two_cpu_processes(), workdir, "ddp", [*ddp, *EVALUATED, *pushed], env={"RECORD_PUSHES": "1"}
        )
        failing = {"FAIL_EVALUATION_ON_RANK": "1"}
        started["ddp-failing"] = start(two_cpu_processes(), workdir, "ddp-failing", [*ddp, *EVALUATED], env=failing)
        started["ddp-uninterrupted"] = two_process_resume_run(workdir, "ddp-uninterrupted")
        started["ddp-killed"] = two_process_resume_run(workdir, "ddp-resumed", kill_at_step=5)
        started["uninterrupted"] = resume_run(workdir, "uninterrupted")
        started["killed"] = resume_run(workdir, "resumed", kill_at_step=7)
        for variant in RESUMED_VARIANTS:
            started[f"uninterrupted-{variant}"] = resume_run(workdir, f"uninterrupted-{variant}", variant=variant)
            started[f"killed-{variant}"] = resume_run(workdir, f"resumed-{variant}", kill_at_step=5, variant=variant)
    yield started
    for run in started.values():
        if run.process.poll() is None:  # a test failed early: stop the launcher and the processes it started
            os.killpg(run.process.pid, signal.SIGKILL)


def finish(run: Run, returncode: int = 0) -> str:
    run.process.wait(timeout=600)
    log = run.log.read_text()
    assert run.process.returncode == returncode, log[-4000:]
    return log


def probe_result(output_dir: Path, rank: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    weights = load_file(output_dir / f"rank{rank}.safetensors")
    return weights, json.loads((output_dir / f"rank{rank}.json").read_text())


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in keys or a)


def test_killed_run_resumes_to_the_uninterrupted_result(runs, workdir, cifar10_path):
    """A run SIGKILLed at step 7 (3-step epochs), whose newest checkpoint (step 6) is half-written as if killed while
    saving it, resumes with `last` from the newest complete one (step 4, mid-epoch: affine maps, optimizer, crops and
    mixup draws restored) and ends like the run never interrupted: 10 steps, the same weights, save_total_limit kept,
    no teacher or affine maps in the model, and its train_seconds adds the resumed run's time to the checkpoint's."""
    finish(runs["killed"], returncode=-signal.SIGKILL)
    killed = runs["killed"].output_dir
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    (killed / "checkpoint-6" / "trainer_state.json").unlink()  # killed while writing checkpoint-6
    # The training clock saved at step 4, set to a sentinel: the resumed run's train_seconds must continue from it.
    state_file = killed / "checkpoint-4" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["stateful_callbacks"]["TrainingClock"]["attributes"]["seconds"] > 0
    state["stateful_callbacks"]["TrainingClock"]["attributes"]["seconds"] = 1000.0
    # ... and its code history, as if another checkout had trained steps 0-4: the resumed part is added after it
    other_code = {"from_step": 0, "commit": "e" * 40, "dirty": False}
    assert state["stateful_callbacks"]["CodeHistory"]["attributes"]["parts"] == [{"from_step": 0, **code_commit()}]
    state["stateful_callbacks"]["CodeHistory"]["attributes"]["parts"] = [other_code]
    state_file.write_text(json.dumps(state))
    started = time.perf_counter()
    resumed = resume_run(workdir, "resumed")
    log = finish(resumed)
    resumed_seconds = time.perf_counter() - started
    assert "checkpoint-6: it is incomplete" in log
    train_seconds = json.loads((resumed.output_dir / "train_summary.json").read_text())["train_seconds"]
    assert 1000.0 < train_seconds < 1000.0 + resumed_seconds
    history = json.loads((resumed.output_dir / "train_summary.json").read_text())["code"]["history"]
    assert history == [other_code, {"from_step": 4, **code_commit()}]
    finish(runs["uninterrupted"])
    expected, expected_state = probe_result(runs["uninterrupted"].output_dir)
    weights, state = probe_result(resumed.output_dir)
    assert expected_state["steps"] == state["steps"] == 10
    assert same_weights(weights, expected)
    for output_dir in (runs["uninterrupted"].output_dir, resumed.output_dir):
        checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
        assert [c.name for c in checkpoints] == ["checkpoint-8", "checkpoint-10"]
        assert sorted(p.name for p in checkpoints[-1].glob("*.safetensors")) == [
            "acm_affine_maps.safetensors", "model.safetensors",
        ]  # fmt: skip
        assert same_weights(load_file(checkpoints[-1] / "model.safetensors"), weights)  # the student only
        assert same_weights(
            load_file(checkpoints[-1] / "acm_affine_maps.safetensors"),
            load_file(runs["uninterrupted"].output_dir / "checkpoint-10" / "acm_affine_maps.safetensors"),
        )


@pytest.mark.parametrize("variant", list(RESUMED_VARIANTS))
def test_other_methods_killed_mid_epoch_resume_to_the_uninterrupted_result(runs, workdir, cifar10_path, variant):
    """SIGKILL at step 5 (mid-epoch: the newest checkpoint is step 4), resume with `last`: the same final weights."""
    finish(runs[f"killed-{variant}"], returncode=-signal.SIGKILL)
    assert sorted(p.name for p in runs[f"killed-{variant}"].output_dir.glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-4",
    ]  # fmt: skip
    resumed = resume_run(workdir, f"resumed-{variant}", variant=variant)
    finish(resumed)
    finish(runs[f"uninterrupted-{variant}"])
    expected, expected_state = probe_result(runs[f"uninterrupted-{variant}"].output_dir)
    weights, state = probe_result(resumed.output_dir)
    assert expected_state["steps"] == state["steps"] == 10
    assert same_weights(weights, expected)


def test_two_process_ddp_run(runs, cifar10_path):
    """accelerate launch (training/accelerate/cpu_2proc.yaml): world size 2, per-device batch x 2 processes x gradient
    accumulation, identical weights on both ranks, evaluation metrics gathered from both processes."""
    log, out = finish(runs["ddp"]), runs["ddp"].output_dir
    assert "Total train batch size (w. parallel, distributed & accumulation) = 16" in log
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    (rank0, state0), (rank1, state1) = probe_result(out, 0), probe_result(out, 1)
    assert state0["steps"] == state1["steps"] == 3 and len(state0["ids"]) == len(state1["ids"]) == 3 * 2 * 4
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    # DDP keeps the parameters equal; BatchNorm running statistics are process-local between forwards (DDP copies
    # process 0's into the others at each forward), and the saved model has process 0's.
    assert same_weights(rank0, rank1, keys=[name for name, _ in model.named_parameters()])
    assert same_weights(rank0, load_file(out / "model.safetensors"))
    test = load_image_dataset(str(cifar10_path), "test", max_samples=37)
    batch = collate_image_batch([test[i] for i in range(37)])
    with torch.no_grad():
        accuracy = (model(batch["pixel_values"]).logits.argmax(-1) == batch["labels"]).float().mean().item()
    assert summary["clean_accuracy"] == pytest.approx(accuracy)  # all 37 images, not one process's share


def single_process_records(out: Path, dataset: Path, split: str, n: int, seed: int, image_size: int = 32) -> dict:
    """Per-example records of `training/evaluate_robustness.py --model out` run alone (one process), its split
    loaded at the run's image size."""
    report = out.parent / f"{out.name}-alone.json"
    command = [
        sys.executable, "training/evaluate_robustness.py", "--model", out, "--dataset", dataset, "--split", split,
        "--n_examples", n, "--attacks", EVALUATED_ATTACKS, "--batch_size", 8, "--seed", seed, "--output", report,
        "--image_size", image_size,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(list(map(str, command)), cwd=REPO, env=env, check=True, capture_output=True)
    return json.loads(report.read_text())["per_example"]


def end_of_run_report(out: Path) -> dict:
    """The run's robustness.json report of EVALUATED_ATTACKS, checked to be in its card's model-index."""
    (report,) = json.loads((out / "robustness.json").read_text())
    assert report["processes"] == 2 and set(report["attacks"]) == set(EVALUATED_ATTACKS.split(","))
    assert report["eps_sweep"]["eps"] == [0, 4 / 255]
    card = {result.metric_config: result.metric_value for result in ModelCard.load(out / "README.md").data.eval_results}
    assert card["pgd-3"] == round(100 * report["robust_accuracy"]["pgd-3"], 2)
    assert (out / "robustness_vs_eps.png").stat().st_size > 0
    return report


def test_two_process_run_evaluates_on_both_processes_like_one(runs, workdir, cifar10_path):
    """The end-of-run evaluation of a 2-process run: both processes attack (batches spread, records gathered),
    process 0 writes robustness.json, the plot and the card and pushes once; the per-example records equal those of
    `training/evaluate_robustness.py` run alone on the saved folder."""
    finish(runs["ddp"])
    out = runs["ddp"].output_dir
    report = end_of_run_report(out)
    assert len(report["per_example"]["index"]) == 37
    assert report["per_example"] == single_process_records(out, cifar10_path, "test", 37, report["seed"])
    # --push_to_hub: process 0 pushes the finished folder, once; the card's usage names the Hub id
    assert [path.name for path in out.glob("pushed-by-rank*")] == ["pushed-by-rank0"]
    assert (out / "pushed-by-rank0").read_text() == "someone/ddp-student"
    assert 'repo_id = "someone/ddp-student"' in (out / "README.md").read_text()


def test_an_evaluation_failing_on_one_process_ends_both_with_the_same_error(runs, cifar10_path):
    """Process 1's attack raises: both processes end (no wait for a peer that gave up) with the same message naming
    the failed process, the trained model kept and no report written."""
    started = time.perf_counter()
    log = finish(runs["ddp-failing"], returncode=1)
    assert time.perf_counter() - started < 300
    message = "failed on 1 of 2 processes: rank 1: RuntimeError: injected failure in batch 1"
    # the launcher stops the other process as soon as one exits, so rank 1 may not print; what is printed agrees
    errors = dict(re.findall(r"^\[rank(\d)\]: mixacm_hf\.run\.EvaluationFailed: (.*)$", log, re.MULTILINE))
    assert "0" in errors and message in errors["0"] and len(set(errors.values())) == 1, log[-4000:]
    out = runs["ddp-failing"].output_dir
    assert (out / "model.safetensors").exists() and not (out / "robustness.json").exists()
    # the command the error gives redoes the run's evaluation (its images, attacks, sweep, batch size and seed) and
    # writes the card: the records of the same run trained without the failure
    retry = shlex.split(errors["0"].split("write its card with: ", 1)[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, *retry[1:]], cwd=REPO, env=env, check=True, capture_output=True)
    finish(runs["ddp"])
    (expected,) = json.loads((runs["ddp"].output_dir / "robustness.json").read_text())
    assert json.loads((out / "report.json").read_text())["per_example"] == expected["per_example"]
    assert ModelCard.load(out / "README.md").data.eval_results


def test_two_process_run_killed_mid_epoch_resumes_then_evaluates(runs, workdir, cifar10_path):
    """2 processes SIGKILLed at step 5 (mid-epoch; newest checkpoint step 4), resumed with `last`: the weights of
    the uninterrupted 2-process run, then the end-of-run evaluation and card, with its records."""
    runs["ddp-killed"].process.wait(timeout=600)  # the launcher's exit status after its processes were killed
    killed = runs["ddp-killed"].output_dir
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (killed / "robustness.json").exists()
    resumed = two_process_resume_run(workdir, "ddp-resumed")
    finish(resumed)
    finish(runs["ddp-uninterrupted"])
    expected, expected_state = probe_result(runs["ddp-uninterrupted"].output_dir)
    weights, state = probe_result(resumed.output_dir)
    assert expected_state["steps"] == state["steps"] == 8
    assert same_weights(weights, expected)
    assert same_weights(load_file(resumed.output_dir / "model.safetensors"), weights)
    report = end_of_run_report(resumed.output_dir)
    assert report["per_example"] == end_of_run_report(runs["ddp-uninterrupted"].output_dir)["per_example"]
    assert len(report["per_example"]["index"]) == 16


def test_streaming_two_processes_see_each_image_once(runs):
    """torchrun, 2 processes, streaming: 4 steps x 8 images x 2 processes = one pass over the 64 images, and every
    image is trained on exactly once, by one of the processes."""
    finish(runs["stream"])
    out = runs["stream"].output_dir
    report = end_of_run_report(out)  # evaluated by both processes, the card written by process 0
    assert report["per_example"] == single_process_records(
        out, out.parent / "imagenet-like", "validation", 16, report["seed"], image_size=56
    )
    (_, rank0), (_, rank1) = probe_result(runs["stream"].output_dir, 0), probe_result(runs["stream"].output_dir, 1)
    assert rank0["steps"] == rank1["steps"] == 4
    assert len(rank0["ids"]) == len(rank1["ids"]) == 32
    assert sorted(rank0["ids"] + rank1["ids"]) == list(range(64))


def test_bf16_autocast_runs_the_models_in_bf16_and_the_loss_terms_in_fp32(tmp_path, tiny_wrn):
    trainer = make_trainer(tmp_path, tiny_wrn, method="mixacm", bf16=True, max_steps=1, logging_steps=10)
    dtypes = {}

    def record_dtype(name: str):
        def hook(module, inputs, output) -> None:
            dtypes[name] = output.dtype

        return hook

    for name, model in (("student", trainer.model), ("teacher", trainer.teacher_model)):
        model.classifier.register_forward_hook(record_dtype(name))
    trainer.train()
    assert dtypes == {"student": torch.bfloat16, "teacher": torch.bfloat16}
    assert {name: terms[0].dtype for name, terms in trainer._loss_terms.items()} == dict.fromkeys(
        ("loss_mix", "loss_kld", "loss_acm"), torch.float32
    )
    features = [torch.randn(2, c, 8, 8, dtype=torch.bfloat16) for c in (16, 32)]
    logits = torch.randn(2, 10, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert activated_channel_map(features[0]).dtype == torch.float32
        assert acm_loss(features, [f.flip(0) for f in features]).dtype == torch.float32
        assert kd_loss(logits, logits.flip(0)).dtype == torch.float32


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_run_configs_parse(path):
    parse_with_config(argument_parser(), ["--config", str(path), "--use_cpu", "true"])  # no GPU here


def test_imagenet_config_schedule():
    """Paper Table 2: lr 0.8, linear warmup from 0.16 over 5 epochs, cosine decay to 0 at 120 epochs of 2048 images."""
    config = ["--config", "training/configs/imagenet_resnet50_mixacm.yaml", "--use_cpu", "true"]
    args = parse_with_config(argument_parser(), config)[2]  # the MixACMTrainingArguments
    epoch = 1_281_167 / 2048
    assert args.max_steps == pytest.approx(120 * epoch, abs=1) and args.warmup_steps == pytest.approx(5 * epoch, abs=1)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=args.learning_rate)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(args.max_steps),
        num_training_steps=args.max_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )  # fmt: skip
    lrs = []
    for _ in range(args.max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warmup = int(args.warmup_steps)
    assert lrs[0] == pytest.approx(0.16) and lrs[warmup - 1] == pytest.approx(0.8) and max(lrs) == pytest.approx(0.8)
    assert lrs[(warmup + args.max_steps) // 2] == pytest.approx(0.4, abs=1e-3) and lrs[-1] == pytest.approx(0, abs=1e-6)


def test_student_from_config_is_new(tmp_path):
    """`--student_from_config`: the folder's / Hub id's architecture (here a tiny HF ResNet) with new weights and the
    dataset's labels, e.g. `microsoft/resnet-50` for the paper's ImageNet student."""
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)
    pretrained = ResNetForImageClassification(config)
    pretrained.save_pretrained(tmp_path / "resnet")
    student = load_student(str(tmp_path / "resnet"), 5, {i: f"class{i}" for i in range(5)}, from_config=True)
    assert isinstance(student, ResNetForImageClassification) and student.config.id2label[4] == "class4"
    assert student.classifier[-1].out_features == 5
    stem = "resnet.embedder.embedder.convolution.weight"
    assert not torch.equal(student.state_dict()[stem], pretrained.state_dict()[stem])
    loaded = load_student(str(tmp_path / "resnet"), 3)
    assert torch.equal(loaded.state_dict()[stem], pretrained.state_dict()[stem])


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    config = load_config_from_file(str(path))
    assert config.num_processes == {"single_gpu": 1, "ddp_8gpu_bf16": 8, "cpu_2proc": 2}[path.stem]


def test_imagenet_transforms():
    """image_size 224: train RandomResizedCrop + flip, eval resize to 256 + center crop 224."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    expected = TF.to_dtype(TF.to_image(TF.center_crop(TF.resize(image, 256), 224)), torch.float32, scale=True)
    assert torch.equal(image_transform(train=False, image_size=224)(image), expected)
    torch.manual_seed(0)
    crops = [image_transform(train=True, image_size=224)(image) for _ in range(3)]
    assert all(c.shape == (3, 224, 224) for c in crops) and not torch.equal(crops[0], crops[1])
