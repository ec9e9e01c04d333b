"""Extending the project is one registry entry: a toy training method (entry + loss) and a toy attack (entry), both
defined here, run through the unchanged trainer and `evaluate_robustness` (docs/design.md, section 7)."""

import pytest
import torch
import torch.nn.functional as F
from test_trainer import make_trainer

from mixacm_hf.hub import relevant_hyperparameters
from mixacm_hf.methods import METHODS, Method, get_method, register_method
from mixacm_hf.robustness import ATTACKS, Attack, attack_title, evaluate_robustness, parse_attack, register_attack


def label_smoothing_terms(trainer, model, pixel_values, labels):
    """Toy method: cross-entropy with label smoothing 0.1, weighted 2."""
    outputs = model(pixel_values=pixel_values)
    return {"loss_smooth": (2.0, F.cross_entropy(outputs.logits.float(), labels, label_smoothing=0.1))}, outputs


@pytest.fixture
def toy_method():
    method = register_method(
        Method("toy-smoothing", "Label smoothing (toy).", terms=label_smoothing_terms,
               weights=lambda trainer: {"loss_smooth": 2.0}, hyperparameters=("learning_rate",))
    )  # fmt: skip
    yield method
    del METHODS[method.name]


def test_a_toy_method_is_one_registry_entry(tmp_path, tiny_wrn, toy_method):
    trainer = make_trainer(tmp_path, tiny_wrn, method="toy-smoothing")
    assert trainer.teacher_model is None and trainer.objective()["loss_terms"] == {"loss_smooth": 2.0}
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 2
    for log in logs:
        assert {key for key in log if key.startswith("loss_")} == {"loss_smooth"}
        assert log["loss"] == pytest.approx(2.0 * log["loss_smooth"], rel=1e-4)
    assert get_method("toy-smoothing").backward_passes({}) == 1
    hyperparameters = {"alpha_acm": 5000.0, "learning_rate": 0.1, "seed": 0}
    assert relevant_hyperparameters("toy-smoothing", hyperparameters) == {"learning_rate": 0.1, "seed": 0}


def test_a_method_whose_terms_disagree_with_its_weights_is_refused(tmp_path, tiny_wrn, toy_method):
    register_method(
        Method("toy-wrong", "Declares another weight.", terms=label_smoothing_terms,
               weights=lambda trainer: {"loss_smooth": 1.0})
    )  # fmt: skip
    try:
        with pytest.raises(RuntimeError, match="registry entry declares"):
            make_trainer(tmp_path, tiny_wrn, method="toy-wrong").train()
    finally:
        del METHODS["toy-wrong"]


def uniform_noise(spec, model, x, y, eps, norm, seed):
    """Toy attack: x + U(-eps, eps) per pixel (Linf), clipped to [0, 1], seeded."""
    generator = torch.Generator().manual_seed(seed)
    return (x + eps * (torch.rand(x.shape, generator=generator) * 2 - 1)).clamp(0, 1)


@pytest.fixture
def toy_attack():
    attack = register_attack(
        Attack("noise", "noise", "noise", run=uniform_noise, title=lambda spec: "Uniform noise",
               settings=lambda spec, eps, norm, seed: {"type": "noise", "eps": eps, "norm": norm, "seed": seed})
    )  # fmt: skip
    yield attack
    del ATTACKS[attack.kind]


def test_a_toy_attack_is_one_registry_entry(tiny_wrn, toy_attack):
    model = tiny_wrn()
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 10
    report = evaluate_robustness(model, (x, y), ["clean", "noise", "fgsm"], eps=8 / 255, batch_size=6, progress=False)
    assert report.attacks["noise"] == {"type": "noise", "eps": 8 / 255, "norm": "Linf", "seed": 0}
    assert len(report.per_example["noise"]) == 12 and 0 <= report.robust_accuracy["noise"] <= 1
    with torch.no_grad():
        expected = [
            bool(flag)
            for start in (0, 6)
            for flag in model(uniform_noise(None, model, x[start : start + 6], None, 8 / 255, "Linf", start // 6))
            .logits.argmax(1)
            .eq(y[start : start + 6])
        ]
    assert report.per_example["noise"] == expected
    assert attack_title("noise") == "Uniform noise" and parse_attack("noise").kind == "noise"
    assert attack_title("cw-100") == "cw-100"  # a foreign card's attack name is shown as it is
