"""`RobustnessReport` (JSON round trip, checked per-example records, paired `compare`) and the sanity checks that
expose gradient masking; the statistics are in `mixacm_hf.statistics`."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_text, locked
from ..statistics import paired_difference, significantly_higher

Check = dict[str, Any]


def accuracy(correct: torch.Tensor) -> float:
    """Fraction of True flags, computed exactly from the counts (0.45, not 0.4499999880...)."""
    return int(correct.sum()) / len(correct)


def make_check(name: str, passed: bool, detail: str) -> Check:
    return {"name": name, "passed": bool(passed), "detail": detail}


def check_not_above_clean(clean_accuracy: float, robust_accuracy: dict[str, float]) -> list[Check]:
    """Robust accuracy above clean accuracy means the attack helps the model: a broken attack or masked gradients."""
    return [
        make_check(f"{name} <= clean", acc <= clean_accuracy, f"{name} {acc:.4f} vs clean {clean_accuracy:.4f}")
        for name, acc in robust_accuracy.items()
    ]


def check_ordered(stronger: str, weaker: str, accuracies: dict[str, float]) -> Check:
    """An attack that should be at least as strong must not leave higher accuracy (e.g. AutoAttack vs PGD)."""
    a, b = accuracies[stronger], accuracies[weaker]
    return make_check(f"{stronger} <= {weaker}", a <= b, f"{stronger} {a:.4f} vs {weaker} {b:.4f}")


def check_within_noise(stronger: str, weaker: str, correct: dict[str, torch.Tensor]) -> Check:
    """More steps must not leave accuracy higher beyond noise (e.g. PGD-100 vs PGD-20)."""
    higher, counts = significantly_higher(correct[stronger], correct[weaker])
    detail = f"{stronger} {accuracy(correct[stronger]):.4f} vs {weaker} {accuracy(correct[weaker]):.4f}; {counts}"
    return make_check(f"{stronger} <= {weaker} (within noise)", not higher, detail)


def check_eps_zero(clean: torch.Tensor, at_zero: dict[str, torch.Tensor], randomised: bool = False) -> Check:
    """At eps = 0 every attack must leave exactly the clean per-example correctness (else the model is randomised,
    not in eval mode, or the attack leaves the eps ball). For a model declared `randomised` (its predictions vary
    from pass to pass) the accuracies must agree within noise, in either direction."""
    differing = {name: int((flags != clean).sum()) for name, flags in at_zero.items()}
    values = ", ".join(
        f"{name} {accuracy(flags):.4f} ({differing[name]} examples differ)" for name, flags in at_zero.items()
    )
    detail = f"clean {accuracy(clean):.4f}; {values}"
    if randomised:
        passed = not any(
            significantly_higher(a, b)[0] for flags in at_zero.values() for a, b in ((clean, flags), (flags, clean))
        )
        return make_check("accuracy at eps=0 equals clean (within noise: randomised model)", passed, detail)
    return make_check("accuracy at eps=0 equals clean", not any(differing.values()), detail)


def check_monotone(name: str, eps: list[float], correct: list[torch.Tensor]) -> Check:
    """Accuracy must not rise (beyond noise) from one eps of a sweep to the next larger one."""
    order = sorted(range(len(eps)), key=eps.__getitem__)
    rises = []
    for i, j in zip(order, order[1:]):
        higher, counts = significantly_higher(correct[j], correct[i])
        if higher:
            rises.append(f"eps {eps[i]:.5f} -> {eps[j]:.5f} ({counts})")
    curve = ", ".join(f"{eps[i]:.5f}: {accuracy(correct[i]):.4f}" for i in order)
    detail = curve + (f"; rises at {'; '.join(rises)}" if rises else "")
    return make_check(f"{name}: accuracy does not rise with eps (within noise)", not rises, detail)


@dataclass
class RobustnessReport:
    """Clean and robust accuracy of one model on one dataset, with everything needed to reproduce and trust it.

    `robust_accuracy` maps attack name -> accuracy, plus "all" (an example counts only if it is classified
    correctly clean and under every attack). `intervals` holds Wilson 95% intervals for "clean", each attack and
    "all". `per_example` (None in reports older than the field) is {"index": [split index, ...], "clean": [bool, ...],
    "<attack>": [...], "all": [...]}, booleans aligned with "index". `eps_sweep` (optional) is
    {"eps": [...], "robust_accuracy": {attack: [accuracy or None per eps]}}. `processes`: how many processes shared
    the batches (of a `torch.distributed` group, or worker processes). `date`: when the evaluation finished (UTC,
    ISO 8601; None in reports older than the field). `corruptions` (None without a corruptions evaluation):
    {attack name: {"mean", "per_corruption", "per_severity", "accuracy": {corruption: [accuracy at severities
    1-5]}}}; the mean is also the attack's `robust_accuracy` (it has no interval and no per-example column).
    """

    clean_accuracy: float
    robust_accuracy: dict[str, float]
    n_examples: int
    eps: float
    norm: str
    attacks: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    seed: int
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    sanity_checks: list[Check] = field(default_factory=list)
    eps_sweep: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    per_example: dict[str, list] | None = None
    processes: int = 1
    date: str | None = None
    corruptions: dict[str, dict[str, Any]] | None = None

    @property
    def flags(self) -> list[str]:
        """Names of the sanity checks that failed (hints of gradient masking or a broken evaluation)."""
        return [check["name"] for check in self.sanity_checks if not check["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_json(self) -> str:
        """Indented JSON; each per-example list on one line (10,000 examples: ~55 kB per attack, not 10,000 lines)."""
        data = self.to_dict()
        records = data.pop("per_example")
        text = json.dumps(data, indent=2)
        if records is None:
            return text
        lines = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in records.items())
        return f'{text[:-2]},\n  "per_example": {{\n{lines}\n  }}\n}}'

    @classmethod
    def from_json(cls, text: str) -> RobustnessReport:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically under a file lock: a reader never sees a half-written report."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            return atomic_write_text(path, self.to_json() + "\n")

    def paired_flags(self, other: RobustnessReport, attack: str = "all") -> tuple[list[bool], list[bool]]:
        """This report's and `other`'s correctness flags under `attack` on the examples both evaluated (by split
        index, in index order).

        Raises:
            ValueError: a report has no per-example records or none of `attack`, its records are malformed or
                disagree with its reported accuracy (`records`), the reports are not comparable
                (`check_comparable`), or no example is shared.
        """
        mine = dict(zip(*self.records(attack, "this report")))
        theirs = dict(zip(*other.records(attack, "the other report")))
        if self.same_model(other):
            raise ValueError(
                f"Both reports measured the same model ({self.model.get('name')} and {other.model.get('name')}: the "
                "same records, or the same folder name and revision with the same verdicts under every attack both "
                "ran): a model compared "
                "with itself measures nothing."
            )
        self.check_comparable(other, attack)
        common = sorted(mine.keys() & theirs.keys())
        if not common:
            raise ValueError("The two reports share no evaluated example (compare reports on the same split).")
        return [mine[i] for i in common], [theirs[i] for i in common]

    def same_model(self, other: RobustnessReport) -> bool:
        """Whether both reports measured one model: the same per-example records, or the same model folder name
        (any parent folder) and revision with the same verdicts under every attack both ran, on every example both
        evaluated (two reports of one model, e.g. its PGD-20 and its AutoAttack evaluation)."""
        if self is other or self.per_example == other.per_example:
            return True
        mine, theirs = self.model, other.model
        if not mine.get("name") or Path(str(mine["name"])).name != Path(str(theirs.get("name"))).name:
            return False
        if mine.get("revision") != theirs.get("revision") or not (self.per_example and other.per_example):
            return False
        shared = (self.per_example.keys() & other.per_example.keys()) - {"index"}
        common = set(self.per_example.get("index", [])) & set(other.per_example.get("index", []))
        if not shared or not common:
            return False
        for attack in shared:
            mine_flags, their_flags = (
                dict(zip(r.per_example["index"], r.per_example[attack])) for r in (self, other)
            )  # fmt: skip
            if any(mine_flags.get(i) != their_flags.get(i) for i in common):
                return False
        return True

    def records(self, attack: str, name: str = "the report") -> tuple[list[int], list[bool]]:
        """The split indices and correctness flags of `attack` ("clean", an attack name or "all"), checked: one
        distinct integer index per evaluated example (`n_examples`), one bool flag per index, and flags whose mean is
        the reported accuracy (records that contradict the report are no evidence of anything).

        Raises:
            ValueError: naming the report (`name` and its model) and what is wrong.
        """
        label = f"{name} ({self.model.get('name')})"
        records = self.per_example
        if records is None:
            raise ValueError(f"{label} has no per-example records (written before they existed); re-evaluate it.")
        if not isinstance(records, dict) or not isinstance(records.get("index"), list):
            raise ValueError(f"{label}: per_example must be a dict with an 'index' list; got {type(records).__name__}"
                             f"{' without index' if isinstance(records, dict) else ''}.")  # fmt: skip
        if attack not in records:
            raise ValueError(f"{label} has no {attack!r} records; it has {list(records)}.")
        index, flags = records["index"], records[attack]
        integral = all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in index)
        if not integral or len(set(index)) != len(index):
            raise ValueError(f"{label}: per_example['index'] must hold distinct integer split indices.")
        if not isinstance(flags, list) or len(flags) != len(index) or len(index) != self.n_examples:
            raise ValueError(
                f"{label}: {len(index)} indices and {len(flags) if isinstance(flags, list) else 'no list of'} "
                f"{attack!r} flags for n_examples = {self.n_examples}; they must be equal."
            )
        if not all(isinstance(flag, bool) for flag in flags):
            bad = next(flag for flag in flags if not isinstance(flag, bool))
            raise ValueError(f"{label}: {attack!r} flags must be true or false, got {bad!r}.")
        reported = self.clean_accuracy if attack == "clean" else self.robust_accuracy.get(attack)
        if isinstance(reported, bool) or not isinstance(reported, numbers.Real) or not math.isfinite(reported):
            raise ValueError(f"{label} reports no finite {attack!r} accuracy ({reported!r}) to check its records by.")
        if abs(sum(flags) / len(flags) - reported) > 0.5 / len(flags):
            raise ValueError(
                f"{label}: its {attack!r} flags give accuracy {sum(flags) / len(flags):.4f}, but it reports "
                f"{reported}; the records do not belong to this report."
            )
        return index, flags

    def check_comparable(self, other: RobustnessReport, attack: str = "all") -> None:
        """Refuse to pair reports that measured different things: another or an unrecorded dataset (its recorded
        identity or name, and revision), split, norm or eps, another attack (its settings, apart from the random
        seed), or, for the per-example worst case "all", another set of attacks.

        Raises:
            ValueError: naming what differs.
        """

        def dataset_of(report: RobustnessReport) -> tuple:
            identity = report.dataset.get("identity") or {}
            revision = identity.get("revision") or report.dataset.get("revision")  # a local copy's, or the Hub's
            return identity.get("type") or report.dataset.get("name"), revision

        def settings(report: RobustnessReport, name: str) -> dict[str, Any]:  # an empty field as an absent one
            attack_settings = (report.attacks.get(name) or {}).items()
            return {key: value for key, value in attack_settings if key != "seed" and value not in ({}, [], None)}

        differences = []
        (mine, my_revision), (theirs, their_revision) = dataset_of(self), dataset_of(other)
        if mine is None or theirs is None:
            differences.append("a report records no dataset, so its examples cannot be matched")
        elif mine != theirs or my_revision != their_revision:
            differences.append(f"dataset {mine}@{my_revision} vs {theirs}@{their_revision}")
        if self.dataset.get("split") is None or other.dataset.get("split") is None:
            differences.append("a report records no split")
        elif self.dataset.get("split") != other.dataset.get("split"):
            differences.append(f"split {self.dataset.get('split')!r} vs {other.dataset.get('split')!r}")
        if self.norm != other.norm or not math.isclose(self.eps, other.eps, rel_tol=1e-6):
            differences.append(f"threat model {self.norm} eps={self.eps:.6g} vs {other.norm} eps={other.eps:.6g}")
        if attack == "all" and not (self.attacks and other.attacks):
            differences.append("a report records no attacks, so its worst case 'all' cannot be matched")
        elif attack == "all" and set(self.attacks) != set(other.attacks):
            differences.append(
                f"the worst case 'all' over other attacks ({sorted(self.attacks)} vs {sorted(other.attacks)}): "
                "compare one named attack"
            )
        for name in sorted(self.attacks) if attack == "all" else [attack]:
            if name != "clean" and (name not in self.attacks or name not in other.attacks):
                differences.append(f"a report records no settings of {name!r}, so the attacks cannot be matched")
            elif settings(self, name) != settings(other, name):
                differences.append(f"{name!r} run with other settings ({settings(self, name)} vs "
                                   f"{settings(other, name)})")  # fmt: skip
        if differences:
            raise ValueError("These reports are not paired measurements: " + "; ".join(differences) + ".")

    def compare(self, other: RobustnessReport, attack: str = "all", z: float = 1.96) -> dict[str, Any]:
        """Paired comparison with `other` on the examples both evaluated (`paired_flags`): `paired_difference`
        (self - other) with `attack` and `n_common`.

        Raises:
            ValueError: as `paired_flags`.
        """
        result = paired_difference(*self.paired_flags(other, attack), z=z)
        return {"attack": attack, "n_common": result["n"], **result}

    @classmethod
    def load(cls, path: str | Path) -> RobustnessReport:
        """The report saved at `path` (`save`).

        Raises:
            ValueError: the file holds a list of reports (a model folder's robustness.json: read it with
                `mixacm_hf.hub.load_reports`) or no report.
        """
        data = json.loads(Path(path).read_text())
        if isinstance(data, list):
            raise ValueError(f"{path} holds {len(data)} reports (a model folder's robustness.json); read them with "
                             "mixacm_hf.hub.load_reports(folder) and pick one.")  # fmt: skip
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds no robustness report (a JSON object), but a {type(data).__name__}.")
        return cls.from_dict(data)

    def summary(self) -> str:
        """Human-readable lines: accuracies with intervals, timings and failed checks."""
        in_ball = [name for name in self.attacks if name != "clean" and name not in (self.corruptions or {})]
        eps = f"{self.eps * 255:g}/255" if self.norm == "Linf" else f"{self.eps:g}"
        threat = f"{self.norm} eps={eps}" if in_ball else "no attack in an eps ball"
        lines = [f"{self.model.get('name')} on {self.dataset.get('name')} [{self.dataset.get('split')}], "
                 f"n={self.n_examples}, {threat}, seed={self.seed}"]  # fmt: skip
        for name, accuracy in {"clean": self.clean_accuracy, **self.robust_accuracy}.items():
            if name == "all" and not in_ball:
                continue  # the worst case over no attack is the clean accuracy: not a robustness result
            low, high = self.intervals.get(name, [None, None])
            interval = "" if low is None else f"  [{low:.2%}, {high:.2%}]"  # none for a mean corruption accuracy
            seconds = f"  {self.seconds[name]:.1f}s" if name in self.seconds else ""
            lines.append(f"  {name:>24}: {accuracy:7.2%}{interval}{seconds}")
        for name, result in (self.corruptions or {}).items():
            severities = ", ".join(f"{value:.2%}" for value in result["per_severity"].values())
            lines.append(f"  {name} per severity 1-5: {severities}")
            lines += [f"  {corruption:>24}: {value:7.2%}" for corruption, value in result["per_corruption"].items()]
        lines += [f"  FLAG {check['name']}: {check['detail']}" for check in self.sanity_checks if not check["passed"]]
        return "\n".join(lines)
