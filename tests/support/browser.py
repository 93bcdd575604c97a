"""A real headless Chromium driven over the Chrome DevTools protocol, with the network off.

Only Debian's /usr/bin/chromium is used (`apt-get install chromium`); the tests that need it
skip, saying so, when it is absent. The browser listens on 127.0.0.1 only, on a port it picks
itself (written to DevToolsActivePort in its fresh profile), and every network request fails:
a proxy on a closed port, no DNS, and DevTools' offline emulation on top.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = Path("/usr/bin/chromium")
# Needed as root in a container (no sandbox, no GPU), and to keep the browser from calling home.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
STARTUP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


class BrowserError(AssertionError):
    pass


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile_dir: Path) -> None:
        self.profile_dir = profile_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: websocket.WebSocket | None = None
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def __enter__(self) -> Chromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._devtools_port()
        # No proxy for the loopback DevTools endpoint, whatever the environment says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=COMMAND_TIMEOUT_S) as response:
            targets = json.load(response)
        page = next(target for target in targets if target["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"],
                                                  timeout=COMMAND_TIMEOUT_S, suppress_origin=True)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Network.emulateNetworkConditions", offline=True, latency=0,
                  downloadThroughput=-1, uploadThroughput=-1)
        return self

    def _devtools_port(self) -> int:
        # Chromium writes the port it bound once it listens: wait for that file, with a deadline.
        active_port = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode} at start")
            if active_port.is_file():
                lines = active_port.read_text().splitlines()
                if lines and lines[0].isdigit():
                    return int(lines[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port in {STARTUP_TIMEOUT_S:g}s")

    def __exit__(self, *exc: object) -> None:
        if self.socket is not None:
            try:
                self.send("Browser.close")
            except (BrowserError, websocket.WebSocketException, OSError):
                pass
            self.socket.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one DevTools command; events that arrive meanwhile are kept in `events`."""
        assert self.socket is not None
        self._next_id += 1
        command_id = self._next_id
        self.socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == command_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        assert self.socket is not None
        while True:
            message = json.loads(self.socket.recv())  # times out after COMMAND_TIMEOUT_S
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message

    def open(self, path: Path, width: int, height: int) -> None:
        """Load `path` at a `width` x `height` CSS-pixel viewport (a phone's below 600 px)."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 600)
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))
        return path

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry'].get('text')}")
        return found

    def requested_urls(self) -> list[str]:
        return [event["params"]["request"]["url"] for event in self.events
                if event["method"] == "Network.requestWillBeSent"]
