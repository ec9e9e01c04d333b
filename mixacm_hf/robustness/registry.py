"""Attacks as a registry: one `Attack` entry per attack family, read by the evaluator, the command lines, the report
and the model card (docs/design.md, section 7.2). Adding an attack is one `register_attack(Attack(...))` call.

Every attack takes pixels in [0, 1] (B, C, H, W) and a budget `eps` in pixel units, and returns adversarial examples
of the same shape inside the eps ball and in [0, 1] (the evaluator checks both).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attacks import GRADIENT_NORMS, NORMS, Norm, fgsm, pgd
from .autoattack import AUTOATTACK_ATTACKS, VERSIONS, autoattack, check_autoattack_attacks, usable_components
from .corruptions import (
    ADAPTED_NOTE,
    CORRUPTIONS,
    FROST_NOTE,
    GENERATED_NOTE,
    PUBLISHED_NOTE,
    SEVERITIES,
    check_corruption_names,
    corrupt_batch,
    imagecorruptions_version,
)


@dataclass(frozen=True)
class AttackSpec:
    """One parsed attack of an evaluation: its `name` (as the report and card show it), the registry `kind`, and
    the options its name gave. PGD's step is `relative_step_size` * eps (0.25: 2/255 at eps = 8/255). Random starts
    and AutoAttack are seeded with the evaluation's seed plus the batch index. A transfer attack crafts PGD examples
    on `source_model` (loaded from `source`, a folder or Hub id: `transfer.load_transfer_sources`). A corruptions
    evaluation runs `corruptions` (None: all 15) at each severity, one part (`severity` > 0, one corruption) at a
    time, on images read from `corruptions_dir` (published layout, `images_per_severity` N, files' `sha256`) or
    generated; its results are named `benchmark` (`cifar10-c`, `cifar10-c-generated`)."""

    name: str
    kind: str
    steps: int = 0
    restarts: int = 1
    relative_step_size: float = 0.25
    components: tuple[str, ...] | None = None  # AutoAttack components; None = version "standard"
    dropped: dict[str, str] | None = None  # a version's components dropped for lack of classes, with the reason
    version: str = "standard"  # AutoAttack's version: standard, plus or rand
    source: str | None = None  # a transfer attack's source model (None: the evaluated student's teacher)
    source_model: nn.Module | None = field(default=None, compare=False, repr=False)
    corruptions: tuple[str, ...] | None = None  # a corruptions evaluation's corruptions; None = all 15
    severity: int = 0  # one part of a corruptions evaluation (0: the whole evaluation)
    corruptions_dir: str | None = None  # published CIFAR-10-C layout; None = generated with imagecorruptions
    images_per_severity: int | None = None  # N of the published files
    sha256: tuple[tuple[str, str], ...] | None = None  # (file name, sha256) of the published files read
    benchmark: str | None = None  # a corruptions evaluation's task id (`corruptions.benchmark_name`)

    @property
    def attack(self) -> Attack:
        return ATTACKS[self.kind]

    def settings(self, eps: float, norm: str, seed: int) -> dict[str, Any]:
        """What the report records about this attack at budget `eps`."""
        return self.attack.settings(self, eps, norm, seed)

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, seed: int
    ) -> torch.Tensor:
        """Adversarial examples (B, C, H, W) in [0, 1] for one batch."""
        return self.attack.run(self, model, x, y, eps, norm, seed)

    @property
    def title(self) -> str:
        """How a card names it: `PGD-20`, `AutoAttack (apgd-ce+square)`."""
        return self.attack.title(self)


Runner = Callable[[AttackSpec, nn.Module, torch.Tensor, torch.Tensor, float, str, int], torch.Tensor]


@dataclass(frozen=True)
class Attack:
    """One attack family.

    Args:
        kind: its registry key.
        pattern: regular expression the lowercased attack name must match in full; its named groups go to `parse`.
        help: the names it accepts, for `--help` and error messages.
        run: (spec, model, x, y, eps, norm, seed) -> adversarial examples (B, C, H, W) in [0, 1], in the eps ball.
        settings: (spec, eps, norm, seed) -> what the report records.
        title: spec -> the name a card shows.
        parse: match -> the `AttackSpec` options its name gives (raise `ValueError` for impossible values).
        role: "clean" (no attack), "gradient" (single-model gradient attacks: a stronger one, by `strength`, must
            not do worse beyond noise), "ensemble" (AutoAttack-like: must not do worse than any gradient attack;
            not run at eps = 0) or "transfer" (examples crafted on another model: must not do better than a
            white-box gradient attack of at least its `strength`, which the evaluation must include) or
            "corruption" (common corruptions: no L-norm budget, so no eps-ball check, eps sweep, eps = 0 check or
            ordering against clean or the attacks; its images are checked to be in [0, 1] with the clean images'
            shape, and it is kept out of the per-example worst case "all").
        strength: spec -> an order among gradient attacks (e.g. steps x restarts).
        prepare: (spec, number of classes) -> the spec to run (e.g. AutoAttack's components that the classes allow).
        norms: the threat models it implements (an evaluation in another is refused before any attack runs).
    """

    kind: str
    pattern: str
    help: str
    run: Runner
    settings: Callable[[AttackSpec, float, str, int], dict[str, Any]]
    title: Callable[[AttackSpec], str]
    parse: Callable[[re.Match], dict[str, Any]] = lambda match: {}
    role: str = "gradient"
    strength: Callable[[AttackSpec], int] = lambda spec: 1
    prepare: Callable[[AttackSpec, int], AttackSpec] = lambda spec, num_classes: spec
    norms: tuple[str, ...] = GRADIENT_NORMS


ATTACKS: dict[str, Attack] = {}
ROLES: tuple[str, ...] = ("clean", "gradient", "ensemble", "transfer", "corruption")
NORM_FREE_ROLES: tuple[str, ...] = ("clean", "corruption")  # roles an L-norm budget does not apply to


def register_attack(attack: Attack) -> Attack:
    """Add `attack` to the registry (returns it).

    Raises:
        ValueError: an attack of that kind is registered already, or its role is unknown.
    """
    if attack.kind in ATTACKS:
        raise ValueError(f"An attack of kind {attack.kind!r} is registered already.")
    if attack.role not in ROLES:
        raise ValueError(f"Attack role must be one of {', '.join(ROLES)}, got {attack.role!r}.")
    ATTACKS[attack.kind] = attack
    return attack


def attack_help() -> str:
    return ", ".join(attack.help for attack in ATTACKS.values())


def parse_attack(name: str | AttackSpec) -> AttackSpec:
    """The `AttackSpec` of a name: `"clean"`, `"fgsm"`, `"pgd-20"`, `"pgd-20x5"` (5 restarts), `"autoattack"`,
    `"autoattack:apgd-ce+square"`, `"autoattack:plus"`, `"autoattack:rand"`, `"transfer"`, `"transfer:<model>"`,
    `"corruptions"`, `"corruptions:fog+snow"`, or any registered attack's. Names match case-insensitively; a transfer
    source keeps its case.

    Raises:
        ValueError: no registered attack accepts the name (the message lists the valid ones).
    """
    if isinstance(name, AttackSpec):
        return name
    key = name.strip().lower()
    for attack in ATTACKS.values():
        if re.fullmatch(attack.pattern, key):
            options = attack.parse(re.fullmatch(attack.pattern, name.strip(), re.IGNORECASE))
            return AttackSpec(options.pop("name", key), attack.kind, **options)
    raise ValueError(f"Unknown attack {name!r}. Valid attacks: {attack_help()}.")


def check_attack_norms(specs: list[AttackSpec], norm: str) -> None:
    """Check that every attack implements the threat model `norm`.

    Raises:
        ValueError: naming the attacks that do not, and those that do.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    refused = [spec.name for spec in specs if spec.attack.role not in NORM_FREE_ROLES and norm not in spec.attack.norms]
    if refused:
        usable = [
            attack.help for attack in ATTACKS.values() if norm in attack.norms and attack.role not in NORM_FREE_ROLES
        ]
        raise ValueError(f"{', '.join(refused)}: not implemented for {norm}. Attacks for {norm}: {'; '.join(usable)}.")


def attack_title(name: str) -> str:
    """How a card names an attack (`pgd-20` -> PGD-20); a name no registered attack accepts (a foreign card's) is
    shown as it is."""
    try:
        return parse_attack(name).title
    except ValueError:
        return name


# -- the built-in attacks ------------------------------------------------------------------------------------------
def _pgd_options(match: re.Match) -> dict[str, Any]:
    steps, restarts = int(match["steps"]), int(match["restarts"] or 1)
    if steps < 1 or restarts < 1:
        raise ValueError(f"PGD needs steps and restarts >= 1, got {match.group(0)!r}.")
    return {"steps": steps, "restarts": restarts}


def _pgd_settings(spec: AttackSpec, eps: float, norm: str, seed: int) -> dict[str, Any]:
    return {
        "type": "pgd", "eps": eps, "norm": norm, "steps": spec.steps, "restarts": spec.restarts,
        "step_size": eps * spec.relative_step_size, "relative_step_size": spec.relative_step_size,
        "random_start": True, "loss": "cross_entropy", "seed": seed,
    }  # fmt: skip


def _autoattack_settings(spec: AttackSpec, eps: float, norm: str, seed: int) -> dict[str, Any]:
    custom = spec.version == "standard" and spec.components is not None and not spec.dropped
    settings = {
        "type": "autoattack", "eps": eps, "norm": norm, "package": "pyautoattack",
        "version": "custom" if custom else spec.version,
        "attacks": list(spec.components or VERSIONS[spec.version]), "dropped": spec.dropped or {}, "seed": seed,
    }  # fmt: skip
    return {**settings, "eot_iter": 20} if spec.version == "rand" else settings


def _autoattack_components(spec: AttackSpec, num_classes: int) -> AttackSpec:
    """The components usable for `num_classes` (see `usable_components`)."""
    usable = usable_components(spec.components, num_classes, spec.version)
    return replace(spec, **dict(zip(("components", "dropped"), usable)))


def _run_fgsm(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> torch.Tensor:
    return fgsm(model, x, y, eps=eps, norm=norm)


def _run_pgd(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> torch.Tensor:
    step_size = eps * spec.relative_step_size
    return pgd(
        model, x, y, eps=eps, norm=norm, steps=spec.steps, restarts=spec.restarts, step_size=step_size, seed=seed
    )


def _run_autoattack(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> torch.Tensor:
    return autoattack(model, x, y, eps=eps, norm=norm, attacks=spec.components, seed=seed, version=spec.version)


def _autoattack_options(match: re.Match) -> dict[str, Any]:
    components = (match["components"] or "").lower()
    return {"components": check_autoattack_attacks(components.split("+"))} if components else {}


TRANSFER_STEPS = 20  # the white-box pgd-20's settings


def _run_transfer(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> torch.Tensor:
    """PGD-20 examples crafted on the source model (white-box pgd-20's step, start and seed), for `model`."""
    if spec.source_model is None:
        raise ValueError(f"{spec.name}: its source model is not loaded (transfer.load_transfer_sources).")
    return _run_pgd(spec, spec.source_model.to(x.device), x, y, eps, norm, seed)


def _transfer_settings(spec: AttackSpec, eps: float, norm: str, seed: int) -> dict[str, Any]:
    return {**_pgd_settings(spec, eps, norm, seed), "type": "transfer", "source": spec.source}


def _run_corruption(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, seed: int
) -> torch.Tensor:
    """One part (a corruption at a severity) of a corruptions evaluation: `x` as given when read from published files
    (the evaluator passes those images), else `x` corrupted by imagecorruptions; eps and norm do not apply."""
    if spec.severity not in SEVERITIES or len(spec.corruptions or ()) != 1:
        raise ValueError(f"{spec.name}: run one corruption at one severity at a time (evaluate_robustness does).")
    return x if spec.corruptions_dir is not None else corrupt_batch(x, spec.corruptions[0], spec.severity, seed)


def _corruptions_settings(spec: AttackSpec, eps: float, norm: str, seed: int) -> dict[str, Any]:
    """What a corruptions evaluation records: no eps or norm (they do not apply), its source and benchmark name."""
    settings = {
        "type": "corruptions", "benchmark": spec.benchmark, "corruptions": list(spec.corruptions or CORRUPTIONS),
        "severities": list(SEVERITIES),
    }  # fmt: skip
    if spec.corruptions_dir is not None:
        return {**settings, "source": "published", "dir": Path(spec.corruptions_dir).resolve().name,
                "images_per_severity": spec.images_per_severity, "sha256": dict(spec.sha256 or ()),
                "files": PUBLISHED_NOTE}  # fmt: skip
    generated = {**settings, "source": "generated", "package": "imagecorruptions",
                 "package_version": imagecorruptions_version(), "parameters": GENERATED_NOTE, "adapted": ADAPTED_NOTE,
                 "seed": seed}  # fmt: skip
    return {**generated, "frost": FROST_NOTE} if "frost" in generated["corruptions"] else generated


def _corruptions_options(match: re.Match) -> dict[str, Any]:
    names = (match["names"] or "").lower()
    return {"corruptions": check_corruption_names(names.split("+"))} if names else {}


AUTOATTACK_HELP = (
    f"autoattack (standard: {'+'.join(VERSIONS['standard'])}), autoattack:<a>+<b>+... with components from "
    f"{', '.join(AUTOATTACK_ATTACKS)}"
)

for _attack in (
    Attack("clean", "clean", "clean", run=lambda spec, model, x, y, eps, norm, seed: x,
           settings=lambda spec, eps, norm, seed: {"type": "clean"}, title=lambda spec: "Clean", role="clean"),
    Attack("fgsm", "fgsm", "fgsm", run=_run_fgsm, title=lambda spec: "FGSM",
           settings=lambda spec, eps, norm, seed: {"type": "fgsm", "eps": eps, "norm": norm, "step_size": eps,
                                                   "random_start": False}),
    Attack("pgd", r"pgd-(?P<steps>\d+)(?:x(?P<restarts>\d+))?",
           "pgd-<steps>[x<restarts>] (e.g. pgd-20, pgd-100, pgd-20x5)", parse=_pgd_options, run=_run_pgd,
           settings=_pgd_settings, title=lambda spec: spec.name.replace("pgd", "PGD"),
           strength=lambda spec: spec.steps * spec.restarts),
    Attack("autoattack", r"autoattack(?::(?!plus$|rand$)(?P<components>[a-z0-9+-]+))?", AUTOATTACK_HELP,
           parse=_autoattack_options, run=_run_autoattack, settings=_autoattack_settings,
           title=lambda spec: "AutoAttack" + (f" ({spec.name.split(':', 1)[1]})" if ":" in spec.name else ""),
           role="ensemble", prepare=_autoattack_components, norms=NORMS),
    *(Attack(f"autoattack-{version}", f"autoattack:{version}", f"autoattack:{version} ({'+'.join(VERSIONS[version])})",
             parse=lambda match: {"version": match.group(0).split(":")[1].lower()}, run=_run_autoattack,
             settings=_autoattack_settings, title=lambda spec: f"AutoAttack ({spec.version})", role="ensemble",
             prepare=_autoattack_components, norms=NORMS)
      for version in ("plus", "rand")),
    Attack("transfer", r"transfer(?::(?P<source>.+))?", "transfer:<model> (PGD-20 crafted on another model)",
           parse=lambda match: {"source": match["source"], "steps": TRANSFER_STEPS,
                                "name": f"transfer:{match['source']}" if match["source"] else "transfer"},
           run=_run_transfer, settings=_transfer_settings, role="transfer", strength=lambda spec: spec.steps,
           title=lambda spec: f"Transfer PGD-{spec.steps} from {spec.source or 'the teacher'}"),
    Attack("corruptions", r"corruptions(?::(?P<names>[a-z_+]+))?",
           "corruptions (15 common corruptions x 5 severities), corruptions:<a>+<b>+... with names from "
           + ", ".join(CORRUPTIONS), parse=_corruptions_options, run=_run_corruption,
           settings=_corruptions_settings, role="corruption", norms=NORMS,
           title=lambda spec: "Common corruptions" + (f" ({', '.join(spec.corruptions)})" if spec.corruptions else "")),
):  # fmt: skip
    register_attack(_attack)
CLEAN = parse_attack("clean")
