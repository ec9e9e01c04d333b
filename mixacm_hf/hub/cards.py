"""Model cards of robust classifiers: rendered from the package's Jinja2 template (`template.md`) with the attack
results, the training recipe and facts computed from the model (architecture, parameters, input normalisation)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.identity import dataset_identity, recorded_identity
from ..methods import METHODS, PGDParams, get_method, relevant_hyperparameters
from ..robustness import RobustnessReport, attack_title
from .results import (
    CARD_NAME,
    LOCAL_COPY_SUFFIX,
    format_duration,
    format_eps,
    merge_results,
    report_results,
)

TEMPLATE = Path(__file__).with_name("template.md")  # package data: a wheel install writes cards too
# Read with the code, once: a run that outlives an upgrade of the package renders its cards with the template of the
# code it runs (a newer template may need context this code does not give).
_TEMPLATE_TEXT = TEMPLATE.read_text(encoding="utf-8")
# RobustBench model information (robustbench/model_info/<dataset>/<threat_model>/<name>.json) shown for a zoo teacher
ZOO_RESULTS = (
    ("clean_acc", "Clean accuracy"), ("autoattack_acc", "AutoAttack accuracy"),
    ("external", "Robust accuracy (external evaluation)"), ("corruptions_acc", "Corruption accuracy"),
)  # fmt: skip
TAGS = ("adversarial-robustness",)  # every card's; a trained model's method adds its own (`Method.tags`)


def _shown(value: Any, pattern: str = "{}") -> str:
    """A number formatted with `pattern`; any other value (a foreign card's "61.2 ± 1.1", "8/255") as it is."""
    return pattern.format(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _result_rows(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """The card's results table, values of other cards (strings, fractions) shown as they are."""
    rows = []
    for result in results:
        args = result.metric_args or {}
        interval, norm, eps = args.get("interval_95"), args.get("norm"), args.get("eps")
        eps = format_eps(eps, norm) if isinstance(eps, float) else _shown(eps)
        ours = "type" in args  # this project's results are in %; another card's value is shown in its own units
        name = attack_title(result.metric_config) if result.metric_config else result.metric_name
        if not ours:
            name = f"{name} (`{result.dataset_split}` split; another card's value, in its own units)"
        rows.append({
            "name": name,
            "threat": f"{norm}, eps={eps}" if norm else args.get("benchmark") or "–",
            "accuracy": _shown(result.metric_value, "{:.2f}" if ours else "{}"),
            "interval": f"[{_shown(interval[0], '{:.1f}')}, {_shown(interval[1], '{:.1f}')}]"
            if isinstance(interval, list | tuple) and len(interval) == 2 else _shown(interval or ""),
            "n": args.get("n_examples", ""),
            "seconds": format_duration(args["seconds"]) if isinstance(args.get("seconds"), int | float) else "",
        })  # fmt: skip
    return rows


def sweep_report(reports: Sequence[RobustnessReport]) -> RobustnessReport | None:
    """The report whose eps sweep a card shows (plot and table): of those with a sweep, the one on the most examples,
    the newest of those; None without any."""
    swept = [report for report in reports if report.eps_sweep is not None]
    return max(reversed(swept), key=lambda report: report.n_examples) if swept else None


def _sweep_table(report: RobustnessReport | None) -> dict[str, Any] | None:
    """The card's eps-sweep table: one column per budget, one row per attack (accuracy in %, "–" where not run)."""
    if report is None:
        return None
    sweep = report.eps_sweep
    return {
        "eps": [format_eps(eps, report.norm) for eps in sweep["eps"]],
        "norm": report.norm,
        "n": report.n_examples,
        "rows": [
            {"name": attack_title(name), "values": ["–" if value is None else f"{100 * value:.2f}" for value in values]}
            for name, values in sweep["robust_accuracy"].items()
        ],
    }


def _evaluation(results: Sequence[EvalResult]) -> dict[str, Any] | None:
    if not results:
        return None
    data = dict.fromkeys(f"the `{r.dataset_split}` split of {r.dataset_name}" for r in results)
    corrupted = [r.metric_args or {} for r in results if (r.metric_args or {}).get("type") == "corruptions"]
    return {
        "data": " and ".join(data),
        "autoattack": any((r.metric_config or "").startswith("autoattack") for r in results),
        "corruptions": list(dict.fromkeys(str(args.get("benchmark")) for args in corrupted)),
        "generated_corruptions": any(args.get("source") == "generated" for args in corrupted),
    }


def _teacher_origin(source: dict[str, Any]) -> str | None:
    """A sentence on where a teacher comes from, from `teachers.teacher_provenance`."""
    if source.get("zoo") == "robustbench":
        info = source.get("model_info") or {}
        cited = {"name", "authors", "link"} <= set(info)
        paper = f"; {info['name']}, {info['authors']}, {info['link']}" if cited else ""
        return (
            f"RobustBench model zoo entry `{source['dataset']}/{source['threat_model']}/{source['name']}`, built by "
            f"RobustBench {source['robustbench_version']}'s `{source['builder']}` (checkpoint "
            f"`{Path(source['checkpoint']).name}`, sha256 `{source['sha256']}`{paper}"
            f"{'' if info else '; RobustBench model information not in the installed package'})."
        )
    converted = source.get("converted_from")
    return f"Converted from `{converted['file']}` (sha256 `{converted['sha256']}`)." if converted else None


def _teacher(name: str | None, source: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The teacher's name, where it comes from (`_teacher_origin`, the hooked modules of its hidden states) and the
    results its card (a folder) or RobustBench's model information reports."""
    if not name:
        return None
    card = Path(name) / CARD_NAME
    results = (ModelCard.load(card).data.eval_results or []) if card.is_file() else []
    lines = [
        f"{r.metric_name or r.metric_type}: {r.metric_value}% on {r.dataset_name} "
        f"(n={(r.metric_args or {}).get('n_examples', '?')})"
        for r in results
    ]
    source = source or {}
    info = source.get("model_info") or {}
    reported = [f"{label}: {info[key]}%" for key, label in ZOO_RESULTS if info.get(key) not in (None, "")]
    origin = _teacher_origin(source) or ""
    if source.get("stage_modules"):
        origin += f" Its hidden states: the outputs of its modules {', '.join(map(str, source['stage_modules']))}."
    unknown = (
        "RobustBench's model information on the entry is not in the installed package"
        if source.get("zoo") == "robustbench"
        else "no model card with results was found at that path"
    )
    return {
        "name": name, "results": lines or reported, "origin": origin.strip() or None,
        "results_from": "from its model card" if lines else "as RobustBench's model information reports it",
        "unknown": unknown,
    }  # fmt: skip


def _training(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    method = METHODS.get(summary["method"])  # None: a method this version does not know (a card written elsewhere)
    return {
        "method": summary["method"],
        "title": method.card_title if method else None,
        "text": method.card_text if method else None,
        "citation": method.citation if method else "",
        "teacher": _teacher(summary.get("teacher"), summary.get("teacher_source")),
        "hyperparameters": relevant_hyperparameters(summary["method"], summary.get("hyperparameters", {})),
        "dataset": summary.get("dataset"),
        "n_train": summary.get("n_train"),
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
        "wall_time": format_duration(summary["train_seconds"]),
        "wall_time_note": "; trained beside other jobs: no cost measurement" if summary.get("shared_machine") else "",
        "device": summary.get("device"),
        "world_size": summary.get("world_size", 1),
        "backward_passes": summary.get("backward_passes_per_image"),
        "pgd_backward_passes": get_method("pgd-at").backward_passes(PGDParams(pgd_steps=7)),
        "command": summary.get("command"),
        "weights": kept_weights_sentence(summary),
    }


def kept_weights_sentence(summary: dict[str, Any]) -> str | None:
    """Which weights a run saved, and on what data a checkpoint was selected (`run.kept_weights`,
    `run.validation_record`); None for a summary that does not say (written by an older version)."""
    weights, validation = summary.get("weights"), summary.get("validation")
    if not weights:
        return None
    if validation is None:
        data = ""
    elif validation.get("held_out_fraction"):
        data = (
            f"a validation set of {validation['n']} images held out of the `{validation['split']}` split "
            f"({validation['held_out_fraction']:g} of each class, drawn with seed {validation['seed']}) and left out "
            "of training"
        )
    else:
        data = f"the `{validation['split']}` split ({validation['n']} images)"
    if not weights.get("checkpoint"):
        return f"the last step's (step {weights['step']}); the Trainer evaluated on {data}" if data else (
            f"the last step's (step {weights['step']})"
        )  # fmt: skip
    better = "higher" if weights.get("greater_is_better") else "lower"
    value = _shown(weights.get("value"), "{:.4g}")
    return (
        f"`{weights['checkpoint']}` (step {weights['step']}), the best by `{weights['metric']}` ({value}, {better} is "
        f"better) on {data}, not on the split the results above are measured on"
    )


def _card_facts(architecture: str, params: int | None, summary: dict[str, Any] | None) -> dict[str, Any]:
    """What the leaderboard needs beyond the metrics, stored in the card's `mixacm` metadata."""
    summary = summary or {}
    facts = {
        "architecture": architecture, "params": params, "method": summary.get("method"),
        "teacher": summary.get("teacher"), "epochs": summary.get("epochs"),
        "train_seconds": None if summary.get("shared_machine") else summary.get("train_seconds"),  # no cost then
        "device": summary.get("device"),
        "backward_passes_per_image": summary.get("backward_passes_per_image"),
    }  # fmt: skip
    return {key: value for key, value in facts.items() if value is not None}


def architecture_name(config: dict[str, Any]) -> str:
    """`WRN-16-2` / `DM-WRN-28-10` for WideResNets, else the config's first architecture (or its model type)."""
    if config.get("model_type") == "wide_resnet":
        prefix = "DM-" if config.get("variant") == "dm" else ""
        return f"{prefix}WRN-{config['depth']}-{config['widen_factor']}"
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]


def input_sentence(config: dict[str, Any], processor: dict[str, Any] | None) -> str:
    """What the card says about input pixels, from the model's config and its saved processor config: WideResNets
    normalise inside (mean/std from the config); other models are described by their image processor (which may
    normalise outside the model, or not at all)."""

    def values(numbers: Sequence[float]) -> str:
        return ", ".join(f"{number:.4g}" for number in numbers)

    if config.get("model_type") == "wide_resnet":
        stats = f" (mean {values(config['image_mean'])}, std {values(config['image_std'])})"
        return (
            f"It takes `pixel_values` in [0, 1] and normalises them inside the model{stats}, so attack budgets are "
            "in pixel units."
        )
    applied = (
        "this project's evaluation (and training, for a model trained here) applies it to [0, 1] pixels inside the "
        "forward, so attack budgets are in pixel units."
    )
    if processor is not None and processor.get("do_normalize"):
        return (
            f"Its image processor normalises the pixels outside the model (mean {values(processor['image_mean'])}, "
            f"std {values(processor['image_std'])}); the model itself does not normalise: {applied}"
        )
    timm = config.get("pretrained_cfg") or {}
    if "mean" in timm:  # what the evaluator applies to a timm model, whatever its processor says
        return (
            f"It expects pixels normalised with its timm `pretrained_cfg` (mean {values(timm['mean'])}, std "
            f"{values(timm['std'])}), which the model itself does not apply: {applied}"
        )
    if processor is None:
        return "It has no saved image processor: how its inputs must be scaled and normalised is not recorded here."
    return (
        "It takes `pixel_values` in [0, 1] as they are: there is no mean/std normalisation, neither inside the model "
        "nor in its image processor (which only resizes and rescales), so attack budgets are in pixel units."
    )


def create_model_card(
    model_name: str,
    reports: Sequence[RobustnessReport],
    training_summary: dict[str, Any] | None = None,
    *,
    config: dict[str, Any] | None = None,
    params: int | None = None,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    plot: str | None = None,
    previous_results: Sequence[EvalResult] = (),
    processor: dict[str, Any] | None = None,
    per_example: str | None = None,
    template_path: str | Path = TEMPLATE,
) -> ModelCard:
    """A model card for a robust classifier, rendered from `template_path` (Jinja2).

    Metadata: `library_name: transformers`, `pipeline_tag: image-classification`, tags, `datasets`, `license`, a
    `model-index` with one result per metric of `previous_results` and `reports` (`merge_results`: later ones on as
    many or more examples replace re-measured metrics), and `mixacm` (architecture, params, training cost) for the
    leaderboard. `training_summary` is
    `run_mixacm`'s summary (method, teacher, hyperparameters, compute); `config` the model's config as a dict;
    `plot` the file name of the robustness-vs-eps plot beside the card; `repo_id` the Hub id or path that the
    card's usage snippet loads (default: `model_name`); `dataset_id` the Hub id that a local dataset copy stands
    for (only when the user says so: otherwise the copy is named as itself); `processor` the saved
    preprocessor_config.json as a dict; `per_example` the file name of the per-example records beside the card. The
    sentences on architecture, parameters and input normalisation are
    computed from `config`, `params` and `processor` (`input_sentence`).
    """
    config = config or {}
    summary = training_summary or {}
    results = merge_results(previous_results, *(report_results(report, dataset_id) for report in reports))
    dataset = (
        recorded_identity(reports[-1].dataset, dataset_id)
        if reports
        else dataset_identity(summary.get("dataset"), dataset_id)
    )
    training_data = dataset_identity(summary["dataset"], dataset_id)["type"] if "dataset" in summary else None
    hub_datasets = (training_data, *(r.dataset_type for r in results))  # local copies are no Hub datasets
    datasets = list(dict.fromkeys(d for d in hub_datasets if d and not d.endswith(LOCAL_COPY_SUFFIX)))
    architecture = architecture_name(config)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=[*TAGS, *(METHODS[summary["method"]].tags if summary.get("method") in METHODS else ())],
        datasets=datasets or None,
        metrics=["accuracy"],
        model_name=model_name,
        eval_results=results or None,
        mixacm=_card_facts(architecture, params, training_summary),
    )
    checks = [check for report in reports for check in report.sanity_checks]
    sources = [(summary["dataset"], dataset_identity(summary["dataset"]))] if summary.get("dataset") else []
    sources += [(r.dataset.get("name"), recorded_identity(r.dataset)) for r in reports if r.dataset.get("name")]
    context = {
        "card_data": card_data.to_yaml(),
        "model_name": model_name,
        "repo_id": repo_id or model_name,
        "architecture": architecture,
        "params": f"{params / 1e6:.2f}M" if params else "an unknown number of",
        "image_size": config.get("image_size") or (processor or {}).get("size", {}).get("height", "H"),
        "inputs": input_sentence(config, processor),
        "processor_normalises": config.get("model_type") != "wide_resnet"
        and bool((processor or {}).get("do_normalize") or "mean" in (config.get("pretrained_cfg") or {})),
        "dataset_label": dataset["name"],
        "dataset_id": dataset["type"],
        "results": _result_rows(results),
        "evaluation": _evaluation(results),
        "checks": {
            "total": len(checks),
            "passed": list(dict.fromkeys(check["name"] for check in checks if check["passed"])),
            "failed": [check for check in checks if not check["passed"]],
        },
        "plot": plot,
        "sweep": _sweep_table(sweep_report(reports)),
        "per_example": per_example,
        "asserted_id": dataset_id,
        "evaluation_dataset": dataset_id or (reports[-1].dataset.get("name") if reports else None) or dataset["type"],
        "local_copies": list(  # one entry per copy, however many paths name it
            {
                (identity["type"], identity["revision"]): {"path": path, **identity}
                for path, identity in reversed(sources)
                if identity["local"]
            }.values()
        ),
        "training": _training(training_summary),
    }
    text = _TEMPLATE_TEXT if Path(template_path) == TEMPLATE else Path(template_path).read_text(encoding="utf-8")
    return ModelCard(_card_template(text).render(**context))


@functools.lru_cache(maxsize=8)
def _card_template(text: str) -> jinja2.Template:
    """The compiled card template (compiled once per template text: cards are re-rendered on every update)."""
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    return environment.from_string(text)
