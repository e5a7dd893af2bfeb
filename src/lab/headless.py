"""Open a page in headless Chromium and drive it through the DevTools protocol: collect its console
errors and uncaught exceptions, evaluate JavaScript in it (clicks, reading the DOM). Shared by the
binding explorer's test and load-time benchmark and the ResiliNet service's live-page test; it
needs the `websocket-client` package (test extra) and a `chromium` binary (Debian's package;
`make` installs it when run as root). Chromium's DevTools port listens on loopback only.

    with HeadlessPage("file:///tmp/page/index.html#n=3") as page:
        page.wait_for("document.body.dataset.ready === '1'")
        text = page.evaluate("document.getElementById('example-text').textContent")
        assert not page.errors
"""
from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def unavailable() -> str | None:
    """Why a headless page cannot be opened here (for a test's skip reason), or None."""
    import importlib.util

    if find_chromium() is None or importlib.util.find_spec("websocket") is None:
        return (f"needs Chromium ({', '.join(CHROMIUM_NAMES)}; `make` installs Debian's chromium when run as "
                f"root) and websocket-client (the test extra)")
    return None


class HeadlessPage:
    def __init__(self, url: str, timeout_s: float = 30.0, window: tuple[int, int] = (1400, 1000)):
        self.url, self.timeout_s, self.window = url, timeout_s, window
        self.errors: list[str] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> "HeadlessPage":
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)})")
        self._profile = tempfile.mkdtemp(prefix="explore-chromium-")
        self._proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", f"--window-size={self.window[0]},{self.window[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._connect()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        import websocket   # websocket-client

        port = self._port()
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout_s))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self._ws = websocket.create_connection(url, timeout=self.timeout_s, suppress_origin=True)
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(method)
        self.send("Page.navigate", {"url": self.url})

    def _port(self) -> int:
        """The DevTools port Chromium chose (it writes it into the profile folder)."""
        active = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if active.exists() and (lines := active.read_text().split()):
                return int(lines[0])
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self._proc.returncode} before it listened")
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, params: dict | None = None) -> dict:
        """One DevTools command; events that arrive meanwhile are recorded."""
        call = next(self._ids)
        self._ws.send(json.dumps({"id": call, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == call:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._record(msg)

    def _record(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.errors.append(p["entry"].get("text", "log error"))

    def evaluate(self, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r} threw: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    def screenshot(self, path: str | Path) -> Path:
        """A PNG of the page as it is now (the window's size)."""
        import base64

        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def wait_for(self, expression: str, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        # false, not an exception, while the page is still loading (no document.body yet)
        while not self.evaluate(f"(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}; page errors: {self.errors}")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if getattr(self, "_ws", None) is not None:
            self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)
