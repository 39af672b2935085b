"""A headless Chromium the tests drive through chromedriver's W3C WebDriver API (plain HTTP: no client library).

`Browser(driver_url)` opens a session; `open(url)`, `wait_for(script)`, `run(script)`, `screenshot(path)`.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


class Browser:
    """One browser session; a window of `width` x `height` CSS pixels."""

    def __init__(self, driver_url: str, binary: str, width: int = 1440, height: int = 900):
        self.driver_url = driver_url
        options = {"binary": binary, "args": [*CHROMIUM_ARGS, f"--window-size={width},{height}"]}
        answer = self._call(
            "POST",
            "/session",
            {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}},
        )
        self.session = f"/session/{answer['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.driver_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as e:  # WebDriver errors come as JSON: say which
            raise RuntimeError(f"webdriver {method} {path}: {e.read().decode()[:2000]}") from None

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str, *args):
        """Run JavaScript in the page (a function body: `return ...`); returns its JSON value."""
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args, seconds: float = 60):
        """Run `script` until it returns something truthy; that value, or TimeoutError naming the script."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.run(script, *args)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"the page never satisfied: {script}")

    def click(self, css: str, text: str = "", within: str = "", seconds: float = 60) -> None:
        """A real mouse click on the first element matching `css` (whose text is `text`, if given), inside an
        element matching `within` if given (e.g. a table row), once it is there."""
        element = self.wait_for(
            "const [css, text, within] = arguments;"
            "const scopes = within ? [...document.querySelectorAll(within)] : [document];"
            "return scopes.flatMap(s => [...s.querySelectorAll(css)])"
            ".find(e => !text || e.innerText.trim() === text) || null",
            css,
            text,
            within,
            seconds=seconds,
        )
        self._call("POST", f"{self.session}/element/{next(iter(element.values()))}/click", {})

    def text(self) -> str:
        return self.run("return document.body.innerText")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session}/screenshot")))
        return path

    def close(self) -> None:
        self._call("DELETE", self.session)
