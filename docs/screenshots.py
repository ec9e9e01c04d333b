"""The README's screenshot of the leaderboard Space's paired comparison of two published models, by headless Chromium.

    python docs/screenshots.py [--first MODEL] [--second MODEL] [-o docs/images/leaderboard_compare.png]

Starts `spaces/leaderboard/app.py` over the published `model_cards/*` folders (their `per_example.parquet` and
`.eval_results/`) on a free port of 127.0.0.1, opens `/?first=MODEL&second=MODEL` (the app's URL choice of the pair;
default: the MixACM student `wrn16-2-mixacm-t20-mixup02-acm2k-inmem` against its teacher `teacher-wrn16-2-nfgsm-20ep`,
on Linf eps=8/255 AutoAttack) in headless Chromium, waits until the comparison shows its numbers and saves that
section of the page, 1400 px wide, as a 256-colour PNG. Needs gradio (`pip install -e ".[gradio]"`), Pillow and
Debian's `chromium`; Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`), so nothing
else is needed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIRST, SECOND = "wrn16-2-mixacm-t20-mixup02-acm2k-inmem", "teacher-wrn16-2-nfgsm-20ep"
OUTPUT = REPO / "docs" / "images" / "leaderboard_compare.png"
# the comparison section of the page (`elem_id="compare"` in app.py): its verdict, its menus' values and its box
SECTION = """(() => {
  const box = document.getElementById("compare");
  const verdict = box && box.querySelector("textarea");
  if (!verdict) return null;
  const r = box.getBoundingClientRect();
  return {verdict: verdict.value, menus: [...box.querySelectorAll("input")].map((menu) => menu.value),
          x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};
})()"""


class Chromium:
    """Headless Chromium driven over its DevTools protocol on a pipe: the browser reads commands on its file
    descriptor 3 and writes replies and events on 4, each a JSON message ended by a NUL byte."""

    def __init__(self, width: int = 1400, height: int = 900):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise SystemExit("error: no headless browser: install Debian's `chromium` (apt-get install -y chromium)")
        self._profile = tempfile.TemporaryDirectory()
        commands, self._commands = os.pipe()
        self._replies, replies = os.pipe()

        def pipes() -> None:  # in the browser's process, before exec: the pipes as its descriptors 3 and 4
            moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands, replies)]
            for target, fd in zip((3, 4), moved):
                os.dup2(fd, target)  # inherited by the browser (dup2 clears close-on-exec)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}",
             "about:blank"],
            preexec_fn=pipes, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands)
        os.close(replies)
        self._buffer, self._id, self._session = b"", 0, None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict:
        """The result of one DevTools command (to the page once attached); events in between are skipped."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium: {method}: {reply['error']}")
                return reply["result"]

    def _read(self, timeout: float = 60) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._replies], [], [], timeout)[0]:
                raise TimeoutError(f"Chromium did not answer within {timeout} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self._profile.cleanup()


@contextlib.contextmanager
def space(sources: list[str], timeout: float = 180) -> Iterator[str]:
    """`spaces/leaderboard/app.py` over `sources` on a free port of 127.0.0.1: its URL, once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen(
        [sys.executable, str(REPO / "spaces" / "leaderboard" / "app.py"), *sources, "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if app.poll() is not None:
                raise RuntimeError(f"the app exited with status {app.returncode}: {app.stdout.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the app did not answer at {url} within {timeout} s") from None
                time.sleep(1)
        yield url
    finally:
        app.terminate()
        app.wait(timeout=30)


def render_comparison(url: str, first: str, second: str, width: int = 1400, timeout: float = 120) -> tuple[dict, bytes]:
    """The Space at `url` opened with the pair `first`, `second` chosen in its URL: the comparison section as shown
    (`verdict`: its text; `menus`: the table and the two models chosen) once the verdict names both models, and a PNG
    of the section (a 16 px margin around it)."""
    browser = Chromium(width)
    try:
        browser.send("Page.navigate", url=f"{url}?{urllib.parse.urlencode({'first': first, 'second': second})}")
        deadline, shown, settled = time.monotonic() + timeout, None, 0
        while settled < 3:  # the same verdict three times in a row: the page has stopped changing
            if time.monotonic() > deadline:
                raise TimeoutError(f"the comparison of {first} and {second} did not appear: {shown}")
            time.sleep(0.5)
            now = browser.evaluate(SECTION)
            ready = now and now["verdict"].startswith(f"{first} (report") and f" vs {second} (report" in now["verdict"]
            settled = settled + 1 if ready and now == shown else 0
            shown = now
        margin = 16
        clip = {"x": max(shown["x"] - margin, 0), "y": max(shown["y"] - margin, 0), "scale": 1,
                "width": shown["width"] + 2 * margin, "height": shown["height"] + 2 * margin}  # fmt: skip
        png = browser.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        return shown, base64.b64decode(png)
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", default=FIRST, help=f"a model of model_cards/ (default {FIRST})")
    parser.add_argument("--second", default=SECOND, help=f"the model it is compared with (default {SECOND})")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help="the PNG to write")
    args = parser.parse_args(argv)
    from PIL import Image

    sources = sorted(str(path.parent) for path in (REPO / "model_cards").glob("*/README.md"))
    with space(sources) as url:
        shown, png = render_comparison(url, args.first, args.second)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.output, optimize=True)
    print(" | ".join(shown["menus"]), shown["verdict"], sep="\n")
    print(f"{args.output}: {image.width} x {image.height} px, {args.output.stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
