"""Loss functions against hand-computed values on small tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from mixacm_hf.losses import (
    acm_loss,
    activated_channel_map,
    ard_loss,
    build_affine_maps,
    kd_loss,
    kl_divergence,
    match_layers,
    mixup,
    mixup_cross_entropy,
    rslad_loss,
    trades_loss,
)


def feature_map(values_per_channel):
    """(1, C, 2, 2) map whose channel c has maximum values_per_channel[c] at one position, smaller elsewhere."""
    x = torch.full((1, len(values_per_channel), 2, 2), -5.0)
    for c, v in enumerate(values_per_channel):
        x[0, c, 1, 0] = v
    return x


def test_activated_channel_map_is_normalised_spatial_max():
    x = feature_map([3.0, 4.0])
    assert torch.allclose(activated_channel_map(x, normalize=False), torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(activated_channel_map(x), torch.tensor([[0.6, 0.8]]))


def test_activated_channel_map_matches_amax_and_routes_gradient_to_the_maximum():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 6, 6, generator=generator).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    reference = x.detach().amax(dim=(2, 3))
    assert torch.equal(activated_channel_map(x, normalize=False), reference)
    activated_channel_map(x, normalize=False).sum().backward()
    assert torch.equal(x.grad, (x.detach() == reference[:, :, None, None]).float())
    # bf16 maps (autocast) reduce exactly, returned in fp32
    half = x.detach().to(torch.bfloat16)
    assert torch.equal(activated_channel_map(half, normalize=False), half.amax(dim=(2, 3)).float())


def test_all_zero_maps_give_finite_loss_and_gradient():
    student = torch.zeros(2, 3, 4, 4, requires_grad=True)
    teacher = torch.zeros(2, 3, 4, 4)
    assert torch.equal(activated_channel_map(teacher), torch.zeros(2, 3))
    loss = acm_loss([teacher], [student])
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(student.grad).all()


def test_acm_loss_hand_computed_mean_over_batch_and_channels_sum_over_layers():
    teacher = [feature_map([3.0, 4.0]), feature_map([1.0, 0.0])]
    student = [feature_map([4.0, 3.0]), feature_map([0.0, 2.0])]
    # layer 1: (0.6-0.8)^2 + (0.8-0.6)^2 = 0.08, mean over 2 channels = 0.04
    # layer 2: teacher (1, 0), student (0, 1): (1 + 1) / 2 = 1.0
    assert acm_loss(teacher, student).item() == pytest.approx(1.04)
    assert acm_loss(teacher, student, teacher_layers=[1], student_layers=[1]).item() == pytest.approx(1.0)


def test_channel_alignment_down_and_up():
    # teacher 4 channels -> student 2: adaptive max pool gives max(1, 2) = 2, max(0, 0) = 0 -> normalised (1, 0)
    teacher = feature_map([1.0, 2.0, 0.0, 0.0])
    assert acm_loss([teacher], [feature_map([5.0, 0.0])]).item() == pytest.approx(0.0, abs=1e-7)
    assert acm_loss([teacher], [feature_map([0.0, 5.0])]).item() == pytest.approx(1.0)
    # teacher 2 channels -> student 4 (upsampling repeats): (3, 3, 4, 4) / sqrt(50)
    teacher = feature_map([3.0, 4.0])
    student = feature_map([3.0, 3.0, 4.0, 4.0])
    assert acm_loss([teacher], [student]).item() == pytest.approx(0.0, abs=1e-7)
    student = feature_map([4.0, 4.0, 3.0, 3.0])
    expected = 4 * (1 / math.sqrt(50)) ** 2 / 4
    assert acm_loss([teacher], [student]).item() == pytest.approx(expected)


def test_affine_alignment_uses_learned_map_and_gets_gradients():
    teacher = [feature_map([1.0, 2.0, 3.0])]
    student = [feature_map([1.0, 1.0])]
    maps = build_affine_maps([3], [2])
    with torch.no_grad():
        maps[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
        maps[0].bias.zero_()
    # mapped teacher = (1, 0); student = (1, 1)/sqrt(2)
    expected = ((1 - 2**-0.5) ** 2 + (2**-0.5) ** 2) / 2
    loss = acm_loss(teacher, student, align="affine", affine_maps=maps)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert maps[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one affine map per matched layer"):
        acm_loss(teacher, student, align="affine")
    with pytest.raises(ValueError, match="Unknown ACM channel alignment"):
        acm_loss(teacher, student, align="mean")


def test_layer_matching():
    assert match_layers(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert match_layers(5, 4, [1, 2, 3, 4], [0, 1, 2, 3]) == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert match_layers(5, 4, [-1], [-1]) == [(4, 3)]
    assert match_layers(5, 4, mapping="relative_depth") == [(0, 0), (1, 1), (3, 2), (4, 3)]
    with pytest.raises(ValueError, match="acm_teacher_layers"):
        match_layers(5, 4)
    with pytest.raises(ValueError, match="same length"):
        match_layers(5, 4, [1, 2], [0])
    with pytest.raises(ValueError, match="out of range"):
        match_layers(4, 4, [4], [0])


def test_kd_loss_hand_computed_and_temperature_scaling():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax -> (0.75, 0.25) at temperature 1
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(kl, rel=1e-5)
    # temperature 2 softens the teacher to softmax(log3 / 2, 0) and scales by 4
    p = 1 / (1 + 3**-0.5)
    kl_t2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl_t2, rel=1e-5)
    assert kd_loss(teacher, teacher, temperature=10.0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same classes"):
        kd_loss(torch.zeros(1, 10), torch.zeros(1, 100))


def test_kd_loss_is_batch_mean():
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    single = kd_loss(student[:1], teacher[:1], temperature=1.0)
    assert kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(single.item() / 2, rel=1e-5)


def test_mixup_mixes_with_one_lambda_and_weights_labels():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 4, 4)
    labels = torch.arange(8)
    mixed, labels_a, labels_b, lam = mixup(x, labels, alpha=1.0)
    assert 0 < lam < 1 and torch.equal(labels_a, labels)
    perm = labels_b  # labels are the indices, so labels_b is the permutation
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    logits = torch.randn(8, 8)
    expected = lam * F.cross_entropy(logits, labels_a) + (1 - lam) * F.cross_entropy(logits, labels_b)
    assert torch.allclose(mixup_cross_entropy(logits, labels_a, labels_b, lam), expected)
    # lambda = 1 gives plain cross-entropy on labels_a
    assert torch.allclose(mixup_cross_entropy(logits, labels, perm, 1.0), F.cross_entropy(logits, labels))
    assert mixup(x, labels, alpha=0)[3] == 1.0


def test_mixup_lambda_follows_beta_distribution():
    torch.manual_seed(0)
    x, labels = torch.rand(4, 3, 2, 2), torch.arange(4)
    lams = torch.tensor([mixup(x, labels, alpha=1.0)[3] for _ in range(2000)])
    assert abs(lams.mean().item() - 0.5) < 0.03 and abs(lams.var().item() - 1 / 12) < 0.01  # Beta(1, 1) = U(0, 1)
    lams = torch.tensor([mixup(x, labels, alpha=0.2)[3] for _ in range(2000)])
    assert ((lams < 0.1) | (lams > 0.9)).float().mean() > 0.6  # Beta(0.2, 0.2) is U-shaped


# -- baselines: TRADES, ARD, RSLAD ----------------------------------------------------------------------------------
def _kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) by hand."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(logits: list[float], t: float = 1.0) -> list[float]:
    exps = [math.exp(v / t) for v in logits]
    return [e / sum(exps) for e in exps]


P_LOGITS, Q_LOGITS = [2.0, 0.0, -1.0], [0.0, 1.0, 0.5]


def test_kl_divergence_direction_and_temperature():
    p, q = torch.tensor([P_LOGITS]), torch.tensor([Q_LOGITS])
    assert kl_divergence(p, q).item() == pytest.approx(_kl(_softmax(P_LOGITS), _softmax(Q_LOGITS)), rel=1e-5)
    # the other direction is a different number: the expectation is under the target
    assert kl_divergence(q, p).item() == pytest.approx(_kl(_softmax(Q_LOGITS), _softmax(P_LOGITS)), rel=1e-5)
    assert abs(kl_divergence(p, q).item() - kl_divergence(q, p).item()) > 0.05
    at_t3 = _kl(_softmax(P_LOGITS, 3.0), _softmax(Q_LOGITS, 3.0))
    assert kl_divergence(p, q, temperature=3.0).item() == pytest.approx(at_t3, rel=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        kl_divergence(p, torch.zeros(1, 4))


def test_trades_loss_hand_computed_with_gradient_through_both_sides():
    natural = torch.tensor([P_LOGITS], requires_grad=True)
    adversarial = torch.tensor([Q_LOGITS], requires_grad=True)
    terms = trades_loss(natural, adversarial, torch.tensor([1]), beta=6.0)
    assert set(terms) == {"loss_ce", "loss_trades_kl"}
    assert terms["loss_ce"][0] == 1.0 and terms["loss_trades_kl"][0] == 6.0
    assert terms["loss_ce"][1].item() == pytest.approx(-math.log(_softmax(P_LOGITS)[1]), rel=1e-5)
    kl = _kl(_softmax(P_LOGITS), _softmax(Q_LOGITS))  # KL(f(x) || f(x_adv))
    assert terms["loss_trades_kl"][1].item() == pytest.approx(kl, rel=1e-5)
    sum(w * v for w, v in terms.values()).backward()
    assert natural.grad.abs().sum() > 0 and adversarial.grad.abs().sum() > 0


def test_ard_loss_temperature_factor_direction_and_alpha():
    student_adv, teacher = torch.tensor([Q_LOGITS]), torch.tensor([P_LOGITS])
    terms = ard_loss(student_adv, teacher, torch.tensor([0]), temperature=30.0)
    assert set(terms) == {"loss_kld"} and terms["loss_kld"][0] == 1.0  # alpha = 1: no CE term
    # t^2 KL(T/t || S_adv/t) / K: the reference code's nn.KLDivLoss() averages over the K = 3 classes too
    expected = 30.0**2 * _kl(_softmax(P_LOGITS, 30.0), _softmax(Q_LOGITS, 30.0)) / 3
    assert terms["loss_kld"][1].item() == pytest.approx(expected, rel=1e-4)
    natural = torch.tensor([[0.0, 0.0, 3.0]])
    mixed = ard_loss(student_adv, teacher, torch.tensor([2]), natural, alpha=0.75, temperature=2.0)
    assert mixed["loss_kld"][0] == 0.75 and mixed["loss_ce"][0] == pytest.approx(0.25)
    assert mixed["loss_ce"][1].item() == pytest.approx(-math.log(_softmax([0.0, 0.0, 3.0])[2]), rel=1e-5)
    assert mixed["loss_kld"][1].item() == pytest.approx(
        4 * _kl(_softmax(P_LOGITS, 2.0), _softmax(Q_LOGITS, 2.0)) / 3, rel=1e-5
    )
    with pytest.raises(ValueError, match="clean images"):
        ard_loss(student_adv, teacher, torch.tensor([0]), alpha=0.5)


def test_rslad_loss_targets_the_teacher_in_both_terms():
    natural, adversarial, teacher = torch.tensor([Q_LOGITS]), torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([P_LOGITS])
    terms = rslad_loss(natural, adversarial, teacher)
    assert terms["loss_rslad_natural"][0] == pytest.approx(1 / 6)
    assert terms["loss_rslad_adv"][0] == pytest.approx(5 / 6)
    teacher_probs = _softmax(P_LOGITS)  # each KL(T || S) / K, K = 3: the reference code's mean over classes
    assert terms["loss_rslad_natural"][1].item() == pytest.approx(_kl(teacher_probs, _softmax(Q_LOGITS)) / 3, rel=1e-5)
    assert terms["loss_rslad_adv"][1].item() == pytest.approx(_kl(teacher_probs, [1 / 3] * 3) / 3, rel=1e-5)


def test_baseline_losses_equal_their_reference_codes_on_random_logits():
    """TRADES' code: CE + beta * KLDivLoss(sum) / B; ARD's: alpha t^2 nn.KLDivLoss() (mean over batch and classes) +
    (1 - alpha) CE; RSLAD's: torch.mean of the element-wise KL (batch and classes), weights 5/6 and 1/6."""
    torch.manual_seed(0)
    natural, adversarial, teacher = torch.randn(4, 10) * 3, torch.randn(4, 10) * 3, torch.randn(4, 10) * 3
    labels = torch.tensor([0, 3, 5, 9])

    def elementwise_kl(input_logits, target_logits, temperature=1.0):  # KLDivLoss(reduction="none")
        return F.kl_div(F.log_softmax(input_logits / temperature, 1), F.softmax(target_logits / temperature, 1),
                        reduction="none")  # fmt: skip

    def total(terms):
        return sum(weight * value for weight, value in terms.values()).item()

    trades = F.cross_entropy(natural, labels) + 6.0 * elementwise_kl(adversarial, natural).sum() / 4
    assert total(trades_loss(natural, adversarial, labels, beta=6.0)) == pytest.approx(trades.item(), rel=1e-5)
    ard = 0.3 * 30.0**2 * elementwise_kl(adversarial, teacher, 30.0).mean() + 0.7 * F.cross_entropy(natural, labels)
    terms = ard_loss(adversarial, teacher, labels, natural, alpha=0.3, temperature=30.0)
    assert total(terms) == pytest.approx(ard.item(), rel=1e-5)
    rslad = 5 / 6 * elementwise_kl(adversarial, teacher).mean() + 1 / 6 * elementwise_kl(natural, teacher).mean()
    assert total(rslad_loss(natural, adversarial, teacher)) == pytest.approx(rslad.item(), rel=1e-5)
