"""The leaderboard page: the Gradio Space app serves the committed cards on 127.0.0.1 and a headless Chromium renders
them; the static HTML file renders in the same browser."""

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from mixacm_hf.hub import main
from mixacm_hf.hub.leaderboard import leaderboard

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted(path.parent.name for path in (REPO / "model_cards").glob("*/README.md"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: install Debian's `chromium` package (apt-get install -y chromium)"
)
needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason="gradio is not installed: pip install -e '.[gradio]'"
)
PAIR = ("wrn16-2-mixacm-t20-mixup02-acm2k-inmem", "teacher-wrn16-2-nfgsm-20ep")  # both publish per_example.parquet


def load(path: Path):
    """The module of a script that is no package module (the Space app, docs/screenshots.py)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chromium(target: str, *options: str) -> str:
    """Chromium's output for `target` (a URL) after its scripts ran: `--dump-dom` gives the rendered DOM."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", *options, target],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with status {process.returncode}: {process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(1)
    pytest.fail(f"the app did not answer at {url} within {timeout} s")


@needs_gradio
def test_the_url_chooses_the_comparison_the_space_opens_with():
    app = load(REPO / "spaces" / "leaderboard" / "app.py")
    tables = app.comparable(leaderboard([REPO / "model_cards" / name for name in CARDS]))
    title = next(iter(tables))
    names = [row.model for row in tables[title].rows]
    assert app.preselection(tables, {}) == (title, names[0], names[1])
    assert app.preselection(tables, {"first": PAIR[0], "second": PAIR[1]}) == (title, *PAIR)
    assert app.preselection(tables, {"first": names[1]}) == (title, names[1], names[0])  # the next other model
    assert app.preselection(tables, {"second": names[0]}) == (title, names[1], names[0])
    assert app.preselection(tables, {"first": PAIR[0], "second": PAIR[0]}) == (title, PAIR[0], PAIR[0])
    unknown = {"table": "no such table", "first": "no-such-model", "second": PAIR[0]}
    assert app.preselection(tables, unknown) == (title, next(name for name in names if name != PAIR[0]), PAIR[0])


@needs_chromium
@needs_gradio
def test_space_serves_the_committed_cards_and_chromium_renders_them(tmp_path):
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen(
        [sys.executable, str(REPO / "spaces" / "leaderboard" / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, app)
        config = json.loads(_wait_for(f"{url}config", app))
        frames = [c["props"]["value"] for c in config["components"] if c["type"] == "dataframe"]
        served = [row[1] for frame in frames for row in frame["data"]]  # the Model column (markdown links)
        assert sorted(name.split("](")[0].lstrip("[") for name in served) == CARDS
        assert any("cifar10-local-copy" in str(c["props"].get("value")) for c in config["components"])

        dom = chromium(url, "--dump-dom")
        for name in CARDS:
            assert f">{name}</a>" in dom, name
        screenshot = tmp_path / "space.png"
        chromium(url, f"--screenshot={screenshot}", "--window-size=1400,2400")
        assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000

        # the comparison chosen in the page's URL, as docs/screenshots.py renders it for the README
        shown, png = load(REPO / "docs" / "screenshots.py").render_comparison(url, *PAIR)
        space = load(REPO / "spaces" / "leaderboard" / "app.py")
        tables = space.comparable(leaderboard([REPO / "model_cards" / name for name in CARDS]))
        title = next(iter(tables))
        assert shown["menus"] == [title, *PAIR] and shown["verdict"] == space.comparison(tables[title], *PAIR)
        assert "exact McNemar p = " in shown["verdict"] and png.startswith(b"\x89PNG") and shown["width"] > 1000
    finally:
        app.terminate()
        app.wait(timeout=30)


@needs_chromium
def test_static_html_renders_in_chromium_with_search(tmp_path):
    output = tmp_path / "leaderboard.html"
    main(["leaderboard", *(str(REPO / "model_cards" / name) for name in CARDS), "--format", "html", "-o", str(output)])
    dom = chromium(output.as_uri(), "--dump-dom")
    for name in CARDS:
        assert f">{name}</a>" in dom, name
    assert dom.count('<table class="leaderboard">') == 1 and dom.count("data:image/png;base64,") == len(CARDS)
    rows = re.compile(r'<tr data-model="([^"]+)"( hidden="")?>')
    assert [name for name, hidden in rows.findall(dom) if not hidden] == [name for name, _ in rows.findall(dom)]
    filtered = chromium(f"{output.as_uri()}?q=natural", "--dump-dom")  # the search box, pre-filled from the URL
    shown = [name for name, hidden in rows.findall(filtered) if not hidden]
    assert shown == ["example-wrn16-1-natural"] and len(rows.findall(filtered)) == len(CARDS)
