"""Shared test helpers. CLI tests call ``otmarl.cli.main`` in the test process (seconds saved per
call: no interpreter start, no re-import); a few end-to-end tests still start ``python -m otmarl``
to check the real exit code and that no traceback reaches the user. ``browser`` is one headless
Chromium for the session, driven over the DevTools protocol: the HTML report tests open their
pages in it and check console errors, overflow at 1280 px and every chart (``Browser.check``)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """``otmarl ARGS`` in this process; argparse's own exits (usage errors) become exit codes."""
    from otmarl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:       # argparse: usage errors exit 2, --help and --version 0
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str) -> CliResult:
    """``python -m otmarl ARGS`` in a new process (end-to-end tests only)."""
    p = subprocess.run([sys.executable, "-m", "otmarl", *args], capture_output=True, text=True)
    return CliResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli():
    """Call as ``cli("run", "microgrid-solar", ...)``; returns a ``CliResult``."""
    return run_cli


@pytest.fixture
def cli_process():
    """Like ``cli``, in a new process (end-to-end tests only)."""
    return run_cli_process


# ------------------------------------------------------------------------ a real browser
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--pictures", metavar="DIR", default=None,
                     help="also save the report screenshots of the browser tests into DIR "
                          "(how the pictures of docs/img are made)")


@dataclass
class PageCheck:
    """What a page showed in the browser: the three checks and its screenshot."""

    errors: list[str]
    """Console errors, uncaught exceptions and error log entries, in order."""
    page_width: int
    """The document's scroll width at the viewport width (wider: horizontal overflow)."""
    viewport_width: int
    too_wide: list[str]
    """The elements whose right edge passes the viewport's, as 'tag.class'."""
    charts: dict[str, str]
    """data-chart name -> 'ok', or why it is not drawn (not rendered, an error, no SVG, empty)."""
    counts: dict[str, int]
    """Elements matching each CSS selector asked for (``Browser.check(..., count=...)``)."""
    result: object
    """The value of the script ``Browser.check(..., script=...)`` ran last (None without one)."""
    png: bytes
    """A screenshot of the first screen (before ``script`` ran)."""


# Evaluated in the page after it has loaded: every fact the checks need, as one JSON string.
PAGE_FACTS = """JSON.stringify({
  counts: Object.fromEntries(COUNT.map(s => [s, document.querySelectorAll(s).length])),
  width: document.documentElement.scrollWidth, viewport: window.innerWidth,
  tooWide: Array.from(document.querySelectorAll("body *")).filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 0.5
        && !e.closest(".scroll");
    }).slice(0, 10).map(e => e.tagName.toLowerCase() + (e.className && e.className.baseVal == null ? "." + e.className : "")),
  charts: Array.from(document.querySelectorAll("[data-chart]")).map(e => {
      const svg = e.querySelector("svg:not(.swatch)"), box = svg ? svg.getBoundingClientRect() : null;
      const why = e.dataset.error ? "error: " + e.dataset.error : e.dataset.rendered !== "1" ? "not rendered"
        : !svg ? "no svg" : box.width < 100 || box.height < 50 ? "svg too small" : "ok";
      return [e.dataset.chart, why];
    }),
})"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on the child's fd 3, replies on its fd 4, each a JSON text ended by a NUL byte), so
    a test sees console errors and measures the laid-out page, with nothing but the standard
    library. Every host name is unresolvable: a page can load nothing from a network."""

    def __init__(self, exe: str, profile: str) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._reply_r, reply_w = os.pipe()

        def child_fds() -> None:            # the child's fds 3 and 4, whatever numbers they had
            a, b = os.dup(cmd_r), os.dup(reply_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(reply_w)
        self._next, self._buf, self.events = 0, b"", []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One DevTools command; its result (events that arrive meanwhile go to ``events``)."""
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        """The first event ``method`` of the tab ``session`` (events are kept in ``events``)."""
        mine = lambda ev: ev.get("method") == method and ev.get("sessionId") == session  # noqa: E731
        for ev in self.events:
            if mine(ev):
                return ev
        while True:
            ev = self._read()
            self.events.append(ev)
            if mine(ev):
                return ev

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            # a guard against a hung or dead browser, not a time limit on the page
            if not select.select([self._reply_r], [], [], 120)[0]:
                raise RuntimeError("chromium sent nothing for 120 s")
            chunk = os.read(self._reply_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        text, self._buf = self._buf.split(b"\0", 1)
        return json.loads(text)

    def check(self, page: Path, width: int = 1280, height: int = 900, count: tuple[str, ...] = (),
              script: str = "") -> PageCheck:
        """Open the file ``page`` in a fresh tab ``width`` px wide; what it showed, how many
        elements match each CSS selector of ``count``, and the JSON value of the JavaScript
        expression ``script`` evaluated after the checks (clicks on the page, for example)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=sid)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                          "deviceScaleFactor": 1, "mobile": False}, sid)
        start = len(self.events)
        self.send("Page.navigate", {"url": page.resolve().as_uri()}, sid)
        self.wait_for("Page.loadEventFired", sid)
        expr = f"(() => {{ const COUNT = {json.dumps(list(count))}; return {PAGE_FACTS}; }})()"
        facts = json.loads(self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                                     sid)["result"]["value"])
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, sid)["data"])
        result = self.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                           sid)["result"].get("value") if script else None
        self.send("Target.closeTarget", {"targetId": target})
        return PageCheck(_page_errors(self.events[start:], sid), facts["width"], facts["viewport"],
                         facts["tooWide"], dict(facts["charts"]), facts["counts"], result, png)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._reply_r)


def _page_errors(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and error log entries among ``events`` of a tab."""
    out = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        p, m = ev.get("params", {}), ev.get("method")
        if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append("uncaught: " + d.get("exception", {}).get("description", d.get("text", "")))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append("log: " + p["entry"]["text"])
    return out


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Browser:
    """One headless Chromium for the session (Chromium is a system prerequisite of the tests)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed to test the HTML reports and was not found on "
                    "PATH; install it with: apt-get update && apt-get install -y chromium")
    b = Browser(exe, str(tmp_path_factory.mktemp("chromium-profile")))
    yield b
    b.close()


@pytest.fixture(scope="session")
def pictures(request):
    """The folder of ``--pictures`` (None without it)."""
    d = request.config.getoption("--pictures")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d) if d else None
