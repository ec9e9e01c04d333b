"""Leaderboard: the README's command on the committed cards, foreign cards (string values, fraction eps, no args,
other datasets and splits), filters, CSV/HTML output and the McNemar significance column."""

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mixacm_hf.hub import TEMPLATE, main
from mixacm_hf.hub.leaderboard import leaderboard
from mixacm_hf.hub.leaderboard_cards import coerce_norm, coerce_number
from mixacm_hf.hub.leaderboard_format import format_leaderboard
from mixacm_hf.statistics import mcnemar_p_value

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255


def _metric(value, config, **args):
    metric = {"type": "accuracy", "value": value, "name": f"{config} accuracy", "config": config}
    return {**metric, "args": args} if args else metric


def _card(folder: Path, name: str, metrics, dataset="uoft-cs/cifar10", split="test", mixacm=None) -> Path:
    """A hand-written card in the model-index format of the Hub's spec (as other tools write them)."""
    folder.mkdir(parents=True)
    metadata = {
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {"type": dataset, "name": dataset.upper(), "split": split},
                        "metrics": metrics,
                    }
                ],
            }
        ]
    }
    if mixacm:
        metadata["mixacm"] = mixacm
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n\n# {name}\n")
    return folder


def _aa(value, n=1000, eps=EPS, norm="Linf"):
    return _metric(value, "autoattack", norm=norm, eps=eps, n_examples=n)


@pytest.fixture
def foreign(tmp_path):
    """Cards as found in the wild, and files that are not cards."""
    cards = {
        "ours": _card(
            tmp_path / "ours", "ours", [_metric(80.0, "clean", n_examples=1000), _aa(50.0)],
            mixacm={"architecture": "WRN-16-2", "params": 691674, "epochs": 10.0, "backward_passes_per_image": 1},
        ),
        "strings": _card(
            tmp_path / "strings", "strings",
            [_metric("85.1 ± 1.1", "clean", n_examples="1000"), _aa("61.2 ± 1.1", eps="8/255", norm="linf")],
        ),
        "percent": _card(tmp_path / "percent", "percent", [_metric("70%", "clean"), _aa("55.5", n=500)]),
        "no-args": _card(
            tmp_path / "no-args", "no-args", [_metric(90.0, "clean"), {"type": "accuracy", "value": 40.0,
                                                                      "name": "AutoAttack robust accuracy"}]
        ),
        "cifar100": _card(tmp_path / "cifar100", "cifar100", [_metric(60.0, "clean"), _aa(30.0)], "uoft-cs/cifar100"),
        "train-split": _card(
            tmp_path / "train-split", "train-split", [_metric(99.0, "clean"), _aa(95.0)], split="train"
        ),
        "bad-value": _card(tmp_path / "bad-value", "bad-value", [_metric(75.0, "clean"), _aa("n/a")]),
        "fractions": _card(tmp_path / "fractions", "fractions", [_metric(0.8, "clean"), _aa(0.5)]),
    }  # fmt: skip
    (tmp_path / "notes.txt").write_text("not a card\n")
    (tmp_path / "template.md").write_text(TEMPLATE.read_text())
    (tmp_path / "empty").mkdir()
    (tmp_path / "malformed").mkdir()
    (tmp_path / "malformed" / "README.md").write_text("---\nmodel-index:\n- results: [oops]\n---\n")
    return tmp_path, cards


def test_coercion_of_foreign_values():
    assert coerce_number("61.2 ± 1.1") == 61.2 and coerce_number("61.2 +- 1.1") == 61.2
    assert coerce_number(" 70% ") == 70.0 and coerce_number("8/255") == pytest.approx(8 / 255)
    assert coerce_number(42) == 42.0 and coerce_number("0.5") == 0.5
    for bad in ("n/a", "", None, True, "1/0", float("nan"), [1]):
        assert coerce_number(bad) is None, bad
    assert coerce_norm("linf") == coerce_norm("L_inf") == coerce_norm("Linf") == "Linf" and coerce_norm("l2") == "L2"
    assert coerce_norm("l1") == "L1" and coerce_norm("L3") is None and coerce_norm(None) is None


def test_readme_command_verbatim_on_the_committed_cards_prints_tables(tmp_path):
    """The README's leaderboard command, run in a copy of the committed cards (so the user's own `outputs/`, which
    the command also names, never takes part)."""
    readme = (REPO / "README.md").read_text()
    command = re.search(r"^python -m mixacm_hf\.hub leaderboard model_cards/\*.*$", readme, re.MULTILINE).group(0)
    shutil.copytree(REPO / "model_cards", tmp_path / "model_cards")
    done = subprocess.run(
        command.replace("python", f"'{sys.executable}'", 1), shell=True, cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    tables = [line for line in done.stdout.splitlines() if line.startswith("### ")]
    assert tables and all("Linf, eps=8/255" in line or "clean only" in line for line in tables)
    committed = [path.name for path in (REPO / "model_cards").iterdir() if (path / "README.md").is_file()]
    for name in committed:
        assert f"| {name} |" in done.stdout, name
    # ranked by AutoAttack: the numbers of the first table's AutoAttack column never increase
    first = done.stdout.split("### ")[1]
    robust = [float(cells[7]) for cells in (row.split("|") for row in first.splitlines()[4:] if row) if cells[7].strip()
              != "–"]  # fmt: skip
    assert len(robust) >= 2 and robust == sorted(robust, reverse=True)


def test_foreign_cards_give_separate_tables_and_notes_and_rank_the_valid_ones(foreign):
    folder, cards = foreign
    sources = [*(str(path) for path in cards.values()), *(str(folder / name) for name in ("notes.txt", "template.md",
               "empty", "missing", "malformed"))]  # fmt: skip
    board = leaderboard(sources)
    titles = {(t.dataset, t.split, t.norm, t.eps and round(t.eps * 255)): t for t in board.tables}
    assert set(titles) == {
        ("uoft-cs/cifar10", "test", "Linf", 8), ("uoft-cs/cifar10", "test", None, None),
        ("uoft-cs/cifar100", "test", "Linf", 8), ("uoft-cs/cifar10", "train", "Linf", 8),
    }  # fmt: skip
    main_table = titles[("uoft-cs/cifar10", "test", "Linf", 8)]
    assert [row.model for row in main_table.rows] == ["strings", "percent", "ours"]
    values = {row.model: (row.clean and row.clean.value, row.autoattack and row.autoattack.value) for row in
              main_table.rows}  # fmt: skip
    assert values == {"strings": (85.1, 61.2), "percent": (70.0, 55.5), "ours": (80.0, 50.0)}
    strings = main_table.rows[0]
    assert strings.clean.n == 1000 and strings.clean.interval == pytest.approx((82.8, 87.2), abs=0.05)  # Wilson
    assert main_table.rows[2].facts["architecture"] == "WRN-16-2"
    # their robust metrics were unusable: clean accuracy only, in a table of its own
    assert [row.model for row in titles[("uoft-cs/cifar10", "test", None, None)].rows] == ["no-args", "bad-value"]
    assert [row.model for row in titles[("uoft-cs/cifar100", "test", "Linf", 8)].rows] == ["cifar100"]
    assert [row.model for row in titles[("uoft-cs/cifar10", "train", "Linf", 8)].rows] == ["train-split"]

    notes = "\n".join(board.notes)
    assert f"{cards['no-args']}: metric 'AutoAttack robust accuracy' skipped: no threat model" in notes
    assert f"{cards['bad-value']}: metric 'autoattack accuracy' skipped: value 'n/a'" in notes
    for name, reason in [("notes.txt", "not a markdown model card"), ("template.md", "invalid YAML metadata"),
                         ("empty", "no README.md"), ("missing", "no such file or folder"),
                         ("malformed", "malformed model-index (AttributeError")]:  # fmt: skip
        assert f"{folder / name}: {reason}" in notes, name
    assert f"{cards['fractions']}: every accuracy <= 1: fractions rather than % values? card skipped" in notes
    assert all("fractions" not in row.model for table in board.tables for row in table.rows)
    assert all("\n" not in note for note in board.notes)

    markdown = format_leaderboard(board)
    assert markdown.count("### ") == 4
    assert "| 1 | strings | – | – | 85.10 | [82.8, 87.2] | 61.20 |" in markdown


def test_cli_filters_and_csv(foreign, capsys):
    folder, cards = foreign
    sources = [str(path) for path in cards.values()]
    main(["leaderboard", *sources, "--dataset", "uoft-cs/cifar100"])
    out = capsys.readouterr().out
    assert out.count("### ") == 1 and "| 1 | cifar100 |" in out
    main(["leaderboard", *sources, "--split", "train", "--threat_model", "Linf", "--eps", "8/255"])
    assert capsys.readouterr().out.count("| 1 | train-split |") == 1
    with pytest.raises(SystemExit, match=re.escape("no table matches the filters (threat model L2); the sources have")):
        main(["leaderboard", *sources, "--threat_model", "L2"])
    with pytest.raises(SystemExit, match="no model card with usable results among the sources"):
        main(["leaderboard", str(cards["fractions"]), "--threat_model", "L2"])
    with pytest.raises(SystemExit, match="Unknown threat model 'L7'"):
        main(["leaderboard", *sources, "--threat_model", "L7"])
    main(["leaderboard", *sources, "--format", "csv", "--dataset", "uoft-cs/cifar10", "--split", "test"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ranked = [(row["norm"], row["rank"], row["model"], row["autoattack"]) for row in rows]
    assert ranked == [
        ("Linf", "1", "strings", "61.2"), ("Linf", "2", "percent", "55.5"), ("Linf", "3", "ours", "50.0"),
        ("", "1", "no-args", ""), ("", "2", "bad-value", ""),
    ]  # fmt: skip
    assert rows[2]["params"] == "691674" and rows[2]["autoattack_n"] == "1000"


def test_mcnemar_exact_p_values():
    # b discordant pairs one way, c the other: p = 2 * P(Binomial(b + c, 1/2) <= min(b, c)), capped at 1
    assert mcnemar_p_value([True] * 6, [False] * 6) == pytest.approx(2 / 64)
    first = [True] * 9 + [False] + [True] * 5
    second = [False] * 9 + [True] + [True] * 5
    assert mcnemar_p_value(first, second) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_p_value([True, False], [True, False]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        mcnemar_p_value([True], [True, False])


def test_significance_column_from_per_example_records(tmp_path):
    # model a: correct on 0..7 of 0..9; model b: correct on 8, 9 and on 10..19 (not evaluated by a)
    records = {
        "a": {"index": list(range(10)), "autoattack": [i < 8 for i in range(10)]},
        "b": {"index": list(range(20)), "autoattack": [i >= 8 for i in range(20)]},
        "c": None,
    }
    for name, accuracy in [("a", 80.0), ("b", 60.0), ("c", 10.0)]:
        folder = _card(tmp_path / name, name, [_metric(90.0, "clean", n_examples=10), _aa(accuracy, n=10)])
        if records[name]:
            report = {"dataset": {"name": "uoft-cs/cifar10", "split": "test"}, "norm": "Linf", "eps": EPS,
                      "per_example": {**records[name], "clean": [True] * len(records[name]["index"])}}  # fmt: skip
            (folder / "robustness.json").write_text(json.dumps([report]))
    (table,) = leaderboard([tmp_path / name for name in "abc"]).tables
    assert [row.model for row in table.rows] == ["a", "b", "c"]
    # common indices 0..9: a alone right on 0..7 (8 pairs), b alone right on 8, 9 (2 pairs): p = 2 * 56 / 1024
    assert table.rows[0].p_value_vs_next == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert table.rows[1].p_value_vs_next is None and table.rows[2].p_value_vs_next is None
    markdown = format_leaderboard(leaderboard([tmp_path / name for name in "abc"]))
    assert "p vs next" in markdown and "| 0.109 |" in markdown


def test_static_html_has_every_table_model_link_and_plot(tmp_path):
    folder = tmp_path / "model"
    _card(folder, "model-with-plot", [_metric(80.0, "clean", n_examples=10), _aa(50.0, n=10)])
    (folder / "robustness_vs_eps.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    _card(tmp_path / "other", "other<script>", [_metric(70.0, "clean")], "uoft-cs/cifar100")
    output = tmp_path / "leaderboard.html"
    main(["leaderboard", str(folder), str(tmp_path / "other"), "--format", "html", "-o", str(output)])
    html = output.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count('<table class="leaderboard">') == 2
    assert 'href="model/README.md">model-with-plot</a>' in html
    assert "data:image/png;base64,iVBORw0KGgpmYWtl" in html
    assert "other&lt;script&gt;" in html and "other<script>" not in html


def test_a_filter_that_matches_nothing_names_the_filters_and_what_the_sources_have(foreign):
    _, cards = foreign
    sources = [str(cards[name]) for name in ("ours", "cifar100")]
    have = (
        "the sources have: uoft-cs/cifar10 (UOFT-CS/CIFAR10), test split, Linf, eps=8/255; "
        "uoft-cs/cifar100 (UOFT-CS/CIFAR100), test split, Linf, eps=8/255."
    )
    for filters, named in [
        (["--dataset", "cifar10"], "dataset cifar10"), (["--split", "train"], "split train"),
        (["--threat_model", "l2", "--eps", "0.5"], "threat model L2, eps 0.5"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main(["leaderboard", *sources, *filters])
        assert str(stop.value) == f"error: no table matches the filters ({named}); {have}", filters
    # eps in 0..255 units: the hint of check_eps, up front with Linf, after the tables the sources have without
    with pytest.raises(SystemExit, match=re.escape("error: eps=8 spans the whole [0, 1] pixel range")):
        main(["leaderboard", *sources, "--threat_model", "Linf", "--eps", "8"])
    with pytest.raises(SystemExit) as stop:
        main(["leaderboard", *sources, "--eps", "8"])
    assert str(stop.value).startswith(f"error: no table matches the filters (eps 8); {have} eps=8 spans the whole")
    assert str(stop.value).endswith("Did you mean 8/255 (= 0.031373)?")
    # L2 budgets may exceed 1: no hint, just no table
    board = leaderboard(sources, threat_model="L2", eps=8.0)
    assert board.tables == [] and "Did you mean" not in board.no_match
    assert leaderboard(sources).no_match is None


def test_output_into_a_missing_folder_is_refused_before_reading_any_card(tmp_path, monkeypatch):
    import mixacm_hf.hub.cli as cli

    monkeypatch.setattr(cli, "leaderboard", lambda *args, **kwargs: pytest.fail("read the cards first"))
    missing = tmp_path / "nonexistent"
    with pytest.raises(SystemExit) as stop:
        main(["leaderboard", "model_cards/x", "-o", str(missing / "lb.html")])
    assert str(stop.value).startswith(f"error: --output {missing / 'lb.html'}: its folder {missing} does not exist")
    with pytest.raises(SystemExit, match=f"--output {re.escape(str(tmp_path))} is a folder: give a file name"):
        main(["leaderboard", "model_cards/x", "-o", str(tmp_path)])
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_implausible_and_out_of_range_values_are_skipped_with_the_reason(tmp_path):
    cards = {
        "above-clean": _card(tmp_path / "above-clean", "above-clean", [_metric(85.0, "clean"), _aa(95.0)]),
        "fine": _card(tmp_path / "fine", "fine", [_metric(85.0, "clean"), _aa(40.0)]),
        "out-of-range": _card(
            tmp_path / "out-of-range", "out-of-range",
            [_metric(80.0, "clean"), {"type": "accuracy", "value": 150, "name": "PGD-20 robust accuracy"},
             {"type": "accuracy", "value": -5, "name": "clean accuracy (second)", "config": "clean"}, _aa(101)],
        ),
    }  # fmt: skip
    board = leaderboard(list(cards.values()))
    (ranked,) = [table for table in board.tables if table.norm]
    assert [row.model for row in ranked.rows] == ["fine"]
    (clean_only,) = [table for table in board.tables if not table.norm]
    assert sorted(row.model for row in clean_only.rows) == ["above-clean", "out-of-range"]
    assert board.notes == [
        f"{cards['above-clean']}: autoattack accuracy 95% (Linf, eps=8/255) is above its clean accuracy 85% on "
        "uoft-cs/cifar10 test: implausible, result skipped",
        f"{cards['out-of-range']}: metric 'PGD-20 robust accuracy' skipped: value 150 is out of range (an accuracy "
        "in % is between 0 and 100)",
        f"{cards['out-of-range']}: metric 'clean accuracy (second)' skipped: value -5 is out of range (an accuracy in "
        "% is between 0 and 100)",
        f"{cards['out-of-range']}: metric 'autoattack accuracy' skipped: value 101 is out of range (an accuracy in % "
        "is between 0 and 100)",
    ]


def test_zero_is_a_valid_accuracy_and_only_all_values_in_0_1_suggest_fractions(tmp_path):
    cards = {
        "zero": _card(tmp_path / "zero", "zero", [_metric(0.0, "clean"), _aa(0.0)]),
        "zero-clean-only": _card(tmp_path / "zero-clean-only", "zero-clean-only", [_metric(0, "clean")]),
        "low-robust": _card(tmp_path / "low-robust", "low-robust", [_metric(30.0, "clean"), _aa(0.5)]),
        "fractions": _card(tmp_path / "fractions", "fractions", [_metric(0.8, "clean"), _aa(0.0)]),
    }
    board = leaderboard(list(cards.values()))
    models = {row.model: (row.clean.value, row.autoattack and row.autoattack.value) for t in board.tables for row in
              t.rows}  # fmt: skip
    assert models == {"zero": (0.0, 0.0), "zero-clean-only": (0.0, None), "low-robust": (30.0, 0.5)}
    assert board.notes == [f"{cards['fractions']}: every accuracy <= 1: fractions rather than % values? card skipped"]


def test_models_of_different_sources_with_the_same_name_are_told_apart(tmp_path):
    first = _card(tmp_path / "a", "wrn16-2-mixacm", [_metric(80.0, "clean"), _aa(50.0)])
    second = _card(tmp_path / "b", "wrn16-2-mixacm", [_metric(70.0, "clean"), _aa(40.0)])
    other = _card(tmp_path / "c", "other", [_metric(60.0, "clean"), _aa(30.0)])
    markdown = format_leaderboard(leaderboard([first, second / "README.md", other]))
    assert f"| 1 | wrn16-2-mixacm ({first}) |" in markdown
    assert f"| 2 | wrn16-2-mixacm ({second / 'README.md'}) |" in markdown
    assert "| 3 | other |" in markdown


def test_html_links_to_local_cards_resolve_from_the_output_folder(tmp_path, monkeypatch):
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlparse

    cards = [_card(tmp_path / "cards" / name, name, [_metric(80.0, "clean"), _aa(50.0)]) for name in ("a b", "c")]
    output = tmp_path / "some" / "other" / "dir" / "lb.html"
    output.parent.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    main(["leaderboard", "cards/a b", "cards/c/README.md", "--format", "html", "-o", "some/other/dir/lb.html"])

    class Links(HTMLParser):
        hrefs: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.hrefs += [value for key, value in attrs if tag == "a" and key == "href"]

    links = Links()
    links.feed(output.read_text())
    assert links.hrefs == ["../../../cards/a%20b/README.md", "../../../cards/c/README.md"]
    assert [(output.parent / unquote(href)).resolve() for href in links.hrefs] == [c / "README.md" for c in cards]
    # printed to stdout the page may be saved anywhere: absolute file URIs; Hub links stay as they are
    board = leaderboard([cards[0]])
    html = format_leaderboard(board, "html")
    assert f'href="{(cards[0] / "README.md").as_uri()}"' in html
    board.tables[0].rows[0].folder, board.tables[0].rows[0].link = None, "https://huggingface.co/u/m"
    assert 'href="https://huggingface.co/u/m"' in format_leaderboard(board, "html", link_base=output.parent)
    assert urlparse(links.hrefs[0]).scheme == ""


def test_the_old_threat_model_spelling_still_works_with_a_warning(capsys):
    """`--threat-model` is read as `--threat_model` (every flag is spelled with underscores), with a FutureWarning."""
    sources = [str(path) for path in sorted((REPO / "model_cards").iterdir()) if (path / "README.md").is_file()]
    with pytest.warns(FutureWarning, match="--threat-model is deprecated: use --threat_model"):
        main(["leaderboard", *sources, "--threat-model", "Linf", "--eps", "8/255"])
    tables = [line for line in capsys.readouterr().out.splitlines() if line.startswith("### ")]
    assert tables and all("Linf, eps=8/255" in line for line in tables)


def test_autoattack_plus_and_rand_rank_in_tables_of_their_own(tmp_path):
    """A version other than AutoAttack's standard one is another measurement: `autoattack:plus` and `autoattack:rand`
    results get their own table per threat model (never mixed into the standard AutoAttack ranking)."""

    def version(value, name):
        return _metric(value, f"autoattack:{name}", norm="Linf", eps=EPS, n_examples=1000)

    a = _card(tmp_path / "a", "a", [_metric(80.0, "clean", n_examples=1000), _aa(40.0), version(38.0, "plus")])
    b = _card(tmp_path / "b", "b", [_metric(70.0, "clean", n_examples=1000), _aa(45.0), version(47.0, "rand")])
    board = leaderboard([a, b])
    tables = {table.title: [(row.model, row.autoattack and row.autoattack.value) for row in table.rows]
              for table in board.tables}  # fmt: skip
    assert tables == {
        "uoft-cs/cifar10 (UOFT-CS/CIFAR10), test split, Linf, eps=8/255": [("b", 45.0), ("a", 40.0)],
        "uoft-cs/cifar10 (UOFT-CS/CIFAR10), test split, Linf, eps=8/255, AutoAttack plus": [("a", 38.0)],
        "uoft-cs/cifar10 (UOFT-CS/CIFAR10), test split, Linf, eps=8/255, AutoAttack rand": [("b", 47.0)],
    }
    text = format_leaderboard(board)
    assert "| AutoAttack plus (%) |" in text and "| AutoAttack rand (%) |" in text
    assert len(leaderboard([a, b], threat_model="Linf").tables) == 3
