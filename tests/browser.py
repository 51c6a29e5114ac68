"""Headless Chromium driven over the DevTools protocol on a pipe (no websocket, no extra package):
open a page, read its text once a condition holds, take a screenshot."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

CHROMIUM = "/usr/bin/chromium"


class Browser:
    """One headless Chromium; `open(url)` then `text_when(...)` and `screenshot(...)`."""

    def __init__(self, profile: Path, size: str = "1400,900"):
        to_browser, self._from_us = os.pipe()
        self._to_us, from_browser = os.pipe()

        def wire() -> None:  # the protocol's pipe: Chromium reads fd 3 and writes fd 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={size}", "--enable-unsafe-swiftshader", "about:blank"],
            pass_fds=(3, 4, to_browser, from_browser), preexec_fn=wire, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self._session = b"", 0, None

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one protocol command (to the page once one is open) and return its result."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._from_us, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._to_us, 1 << 16)
                assert chunk, "Chromium closed the protocol pipe"
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def text_when(self, ready: Callable[[str], bool], timeout: float = 40.0) -> str:
        """The page's visible text once `ready(text)` holds (or as it is after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.call("Runtime.evaluate", {"expression": "document.body.innerText"})["result"].get("value", "")
            if ready(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.5)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._from_us)
        os.close(self._to_us)
