"""A small headless-Chromium driver for the browser tests: the Chrome DevTools Protocol
over ``--remote-debugging-pipe`` (file descriptors 3 and 4, messages separated by NUL
bytes), standard library only -- no browser download, no driver package.

>>> with Chromium(find_chromium()) as browser:
...     page = browser.load(Path("index.html"))
>>> page.errors, page.images, page.links, page.screenshot

:class:`Page` holds what a test asserts on: every console error, uncaught exception,
CSP violation and failed resource load (``errors``), the number of ``<script>``
elements, every ``<img>`` with its
``complete`` flag and natural size, every ``href`` / ``src`` of the document resolved to
an absolute URL, the ids of the document (for in-page anchors), and a PNG screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
"""Executable names looked up on ``PATH`` (``$XEVAL_CHROMIUM`` wins when set)."""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: ``$XEVAL_CHROMIUM``, else the first of
    :data:`BROWSERS` on ``PATH``; None when there is none."""
    given = os.environ.get("XEVAL_CHROMIUM")
    if given:
        return given if Path(given).is_file() and os.access(given, os.X_OK) else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """The browser did not start, died, or did not answer in time."""


@dataclass
class Page:
    url: str
    errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    screenshot: bytes = b""
    title: str = ""
    scripts: int = 0


# What the page reports once loaded: images, every URL it refers to, its ids.
_INSPECT = """(() => {
  const refs = [];
  for (const el of document.querySelectorAll('[href],[src]')) {
    for (const attr of ['href', 'src']) {
      const raw = el.getAttribute(attr);
      if (raw === null) continue;
      refs.push({tag: el.tagName.toLowerCase(), attr: attr, raw: raw,
                 url: new URL(raw, document.baseURI).href});
    }
  }
  return JSON.stringify({
    title: document.title,
    height: Math.max(document.documentElement.scrollHeight, document.body.scrollHeight),
    width: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src'),
      complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
    links: refs,
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    scripts: document.scripts.length,
  });
})()"""

_ALL_IMAGES_DONE = "Array.from(document.images).every(i => i.complete)"


class Chromium:
    """``with Chromium(path) as b: b.load(file)``: one headless browser process driven
    over a pipe. ``timeout`` bounds every wait (seconds)."""

    def __init__(self, executable: str, *, timeout: float = 60.0) -> None:
        self.executable = executable
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self._events: list[dict] = []

    # ------------------------------------------------------------------ process
    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="xeval-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            self.executable,
            "--headless=new",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with it

        def wire_pipes() -> None:  # in the child: the browser reads fd 3, writes fd 4
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)  # (they may be 3 or 4)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                args,
                pass_fds=(3, 4),  # kept open by subprocess after wire_pipes
                preexec_fn=wire_pipes,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        try:
            self.version = self.call("Browser.getVersion")["product"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close")
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired, BrowserError):
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._stderr.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode(errors="replace")
        except (OSError, ValueError):
            return ""

    # ----------------------------------------------------------------- protocol
    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._to_browser, data)
            data = data[n:]
        return self._id

    def _recv(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer from the browser within {self.timeout} s")
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    raise BrowserError(
                        f"the browser exited with code {self.proc.returncode}: "
                        + self._stderr_tail()
                    )
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed the pipe: " + self._stderr_tail())
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and return its result (events that arrive meanwhile are kept)."""
        i = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == i:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(
            e["method"] == method and e.get("sessionId") == session for e in self._events
        ):
            self._events.append(self._recv(deadline))

    def _evaluate(self, expression: str, session: str):
        out = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        if "exceptionDetails" in out:
            raise BrowserError(f"script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    # --------------------------------------------------------------------- page
    def load(self, path: Path, *, width: int = 1280, max_height: int = 16000) -> Page:
        """Open ``path`` (file://) in a new tab, wait for it to load and for every image
        (the viewport is made as tall as the page, capped at ``max_height``, so that
        lazy images load), then inspect it and take a screenshot."""
        url = Path(path).resolve().as_uri()
        self._events.clear()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network", "Audits"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        nav = self.call("Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            raise BrowserError(f"cannot open {url}: {nav['errorText']}")
        self._wait_event("Page.loadEventFired", session)
        info = json.loads(self._evaluate(_INSPECT, session))
        height = int(min(max(info["height"], 900), max_height))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        deadline = time.monotonic() + self.timeout
        for y in range(0, max(int(info["height"]), 1), height):  # lazy images load in view
            self._evaluate(f"window.scrollTo(0, {y})", session)
            while not self._evaluate(_ALL_IMAGES_DONE, session):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        self._evaluate("window.scrollTo(0, 0)", session)
        info = json.loads(self._evaluate(_INSPECT, session))
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                       "scale": 1}},
            session,
        )  # fmt: skip
        # drain what is still queued (late console messages), then close the tab
        self._evaluate("0", session)
        self.call("Target.closeTarget", {"targetId": target})
        page = Page(
            url=url,
            errors=_errors([e for e in self._events if e.get("sessionId") == session]),
            images=info["images"],
            links=info["links"],
            ids=set(info["ids"]),
            screenshot=base64.b64decode(shot["data"]),
            title=info["title"],
            scripts=info["scripts"],
        )
        self._events.clear()
        return page


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, CSP violations and failed loads, one line
    each (the page's own ``console.warn`` / ``log`` are not errors)."""
    out = []
    urls = {
        e["params"]["requestId"]: e["params"]["request"]["url"]
        for e in events
        if e["method"] == "Network.requestWillBeSent"
    }
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            out.append(f"console.{p['type']}: {args}")
        elif m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"uncaught exception: {d.get('exception', {}).get('description', d)}")
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            entry = p["entry"]
            out.append(f"{entry['source']} error: {entry['text']} {entry.get('url', '')}".strip())
        elif m == "Audits.issueAdded" and p["issue"]["code"] == "ContentSecurityPolicyIssue":
            d = p["issue"]["details"]["contentSecurityPolicyIssueDetails"]
            out.append(
                f"CSP violation: {d.get('violatedDirective')} "
                f"({d.get('contentSecurityPolicyViolationType')}) {d.get('blockedURL', '')}"
            )
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append(
                f"failed to load {urls.get(p.get('requestId'), '?')} ({p.get('type')}): "
                f"{p.get('errorText')}"
            )
    return out
