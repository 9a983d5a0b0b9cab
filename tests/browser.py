"""A headless Chromium page driven over the DevTools protocol, for the test that opens
the study's report as people see it (test_workflow.py). Chromium comes from Debian's
packages (``chromium-headless-shell``, or ``chromium``); ``make test`` installs it where
it can."""

from __future__ import annotations

import json
import os
import re
import signal
import shutil
import subprocess
import tempfile
import time
import urllib.request

BINARIES = ("chromium-headless-shell", "chromium")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, BINARIES) if path), None)


class Page:
    """One page of a headless Chromium: ``open`` a file, ``js`` evaluates an expression,
    ``document`` is the DOM with the documents of its frames, and ``errors`` lists the
    console errors and uncaught exceptions seen so far."""

    def __init__(self, binary: str):
        self.profile, self.socket = tempfile.mkdtemp(prefix="chromium-"), None
        # a session of its own: Chromium forks helpers (zygote, renderers) that killing the
        # first process alone would leave running
        self.process = subprocess.Popen([binary, "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                                         f"--user-data-dir={self.profile}", "about:blank"],
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> None:
        port = None
        for line in self.process.stderr:
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = found.group(1)
                break
        if port is None:
            raise AssertionError(f"Chromium exited ({self.process.wait()}) before it listened for DevTools")
        import websocket
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30))
        target = next(p for p in pages if p["type"] == "page")
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60)
        self.sent, self.events = 0, []
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.sent += 1
        self.socket.send(json.dumps({"id": self.sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.sent:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, condition, seconds: float = 20.0):
        """The value of ``condition`` (a JavaScript expression, or a function of nothing)
        once it is truthy; an error after ``seconds``."""
        read = condition if callable(condition) else lambda: self.js(condition)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = read()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"not true after {seconds} s: {condition}")

    def open(self, path) -> None:
        self.call("Page.navigate", url=f"file://{path}")

    def document(self) -> dict:
        return self.call("DOM.getDocument", depth=-1, pierce=True)["root"]

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("exception", {}).get("description", "exception"))
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif event.get("method") == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def close(self) -> None:
        """Chromium and every process it started ended, its profile folder removed."""
        if self.socket is not None:
            self.socket.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        end = time.monotonic() + 10  # the helpers die and are reaped a moment later
        while time.monotonic() < end:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def frame_nodes(node: dict, name: str, inside: bool = False) -> int:
    """How many elements ``name`` (e.g. "TR") the documents of a DOM's frames hold."""
    count = int(inside and node.get("nodeName") == name)
    count += sum(frame_nodes(child, name, inside) for child in node.get("children", []))
    if "contentDocument" in node:
        count += frame_nodes(node["contentDocument"], name, True)
    return count
