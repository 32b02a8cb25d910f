"""The page at `/` in headless Chromium, driven through the DevTools protocol: type, click, read the results.

Uses Debian's `chromium` (never a downloaded browser) and `websocket-client`. Without chromium the test is
skipped locally but fails under CI (`.ci/run` installs it).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_serving import KEY, build_served_model, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--window-size=1100,1000"]


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        # suppress_origin: Chromium refuses websocket clients that send a foreign Origin header.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # skip events until our answer arrives
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        page = self.js("document.body.innerText")
        raise AssertionError(f"timed out waiting for {expression}; page text: {page}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus and clear a field, then insert text as keyboard input does (fires input events)."""
        element = f"document.querySelector({json.dumps(selector)})"
        self.js(f"(() => {{ const el = {element}; el.value = ''; el.focus(); }})()")
        self.send("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        """A real mouse press and release at the centre of the element."""
        element = f"document.querySelector({json.dumps(selector)})"
        box = self.js(f"(() => {{ const r = {element}.getBoundingClientRect();"
                      " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left",
                      clickCount=1)

    def close(self) -> None:
        self.ws.close()


def launch(profile: Path) -> tuple[subprocess.Popen, DevTools]:
    """Chromium with a fresh profile and a DevTools port it picks itself (written to DevToolsActivePort)."""
    assert CHROMIUM is not None
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port_file = profile / "DevToolsActivePort"
    deadline = time.time() + 60
    while not (port_file.is_file() and port_file.read_text().strip()):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise AssertionError(f"chromium did not start: {log}")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
    page = next(t for t in targets if t["type"] == "page")
    return proc, DevTools(page["webSocketDebuggerUrl"])


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI needs it (`apt-get install -y chromium`, see .ci/run)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return CHROMIUM


def test_page_types_clicks_and_shows_predictions(chromium: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = build_served_model(tiny_model_dir, tmp_path / "model")
    server, url = start(model_dir, env={"POLYHEAD_API_KEY": KEY})  # the key from the environment
    browser, tools = launch(tmp_path / "profile")
    sentences = ["John met Mary in Paris", "new chips ship on Monday"]
    try:
        tools.send("Page.enable")
        tools.send("Page.navigate", url=url + "/")
        tools.wait_for("document.readyState === 'complete' && document.getElementById('model').textContent")
        # /health tells a page without the key only that the server is up (#22): no model details
        assert "need the API key" in tools.js("document.getElementById('model').textContent")

        # Without the key the server answers 401 and the page says so.
        tools.type_into("#texts", "\n".join(sentences))
        tools.click("#go")
        assert "API key" in tools.wait_for("document.getElementById('status').textContent")

        tools.type_into("#key", KEY)
        model_text = "document.getElementById('model').textContent"
        assert "topic" in tools.wait_for(f"{model_text}.includes('topic') && {model_text}")  # with the key: the tasks
        tools.click("#go")
        tools.wait_for("document.body.dataset.done === '1'")
        assert tools.js("document.getElementById('status').textContent") == ""

        cards = tools.js("[...document.querySelectorAll('.card')].map((c) => c.innerText)")
        assert len(cards) == 2
        for card, sentence in zip(cards, sentences, strict=True):
            for task in ("topic", "rating", "ner"):
                assert task in card
            assert ("sport" in card or "tech" in card) and sentence.split()[0] in card

        # Highlighted spans: one <mark> per entity the API returns for the same sentences.
        expected = httpx.post(url + "/predict", json={"texts": sentences}, headers={"X-API-Key": KEY}).json()
        entities = sum(len(p["ner"]["entities"]) for p in expected["predictions"])
        assert tools.js("document.querySelectorAll('.card mark').length") == entities

        # Similarity matrix: 2 x 2 with ones on the diagonal.
        cells = tools.js("[...document.querySelectorAll('#simtable td')].map((td) => td.textContent)")
        assert len(cells) == 4 and cells[0] == cells[3] == "1.000"

        ARTIFACTS.mkdir(exist_ok=True)
        shot = tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = ARTIFACTS / "serving_page.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.read_bytes()[:4] == b"\x89PNG"
    finally:
        tools.close()
        browser.terminate()
        browser.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
