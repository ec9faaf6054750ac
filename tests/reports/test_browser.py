"""The HTML reports in a real browser: headless Chromium (the operating system's package;
``.ci/run`` installs it) opens ``index.html`` over file:// and the page must show no
console error, no uncaught exception, no Content-Security-Policy violation and no
failed load; every ``<img>`` must have loaded (``complete`` and ``naturalWidth > 0``);
every local ``href`` / ``src`` must resolve to an existing file (in-page anchors to an
existing id). A screenshot of each page is kept in ``$XEVAL_TEST_ARTIFACTS`` (else a
folder of pytest's temporary directory; the path is printed).

Without a browser the tests skip with the reason; where a browser is required (``CI=true``
or ``XEVAL_REQUIRE_BROWSER=1``) a missing one fails instead. ``$XEVAL_CHROMIUM`` names
the executable when it is not ``chromium`` / ``google-chrome`` on ``PATH``. The driver
is ``_chromium.py`` (DevTools protocol over a pipe, standard library only)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from _chromium import Chromium, find_chromium
from _demo_runs import demo_run

from xeval.reports import write_report


def _browser_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "XEVAL_REQUIRE_BROWSER", ""
    ) not in ("", "0")


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        why = (
            "no Chromium/Chrome executable (looked for $XEVAL_CHROMIUM, then chromium, "
            "chromium-browser, google-chrome on PATH); install the system package, "
            "e.g. `apt-get install chromium`"
        )
        if _browser_required():
            pytest.fail(f"browser required (CI / XEVAL_REQUIRE_BROWSER) but {why}")
        pytest.skip(why)
    with Chromium(exe) as b:
        yield b


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    given = os.environ.get("XEVAL_TEST_ARTIFACTS")
    folder = Path(given) if given else tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_page(
    browser, index: Path, artifacts: Path, name: str, *, anchors: bool = True, images: bool = True
):
    """Load ``index`` and assert everything the module docstring lists (in-page anchors
    only with ``anchors``; at least one image with ``images``)."""
    page = browser.load(index)
    shot = artifacts / f"{name}.png"
    shot.write_bytes(page.screenshot)
    print(f"\nscreenshot of {index}: {shot} ({browser.version})")
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 10_000
    assert page.errors == [], f"{index}: the browser reported errors"
    assert page.scripts == 0, f"{index}: a <script> element (the reports have none)"
    assert page.images or not images, f"{index}: no image"
    broken = [i for i in page.images if not (i["complete"] and i["width"] > 0)]
    assert broken == [], f"{index}: images not loaded"
    missing, remote = [], []
    for ref in page.links:
        url = urlsplit(ref["url"])
        if url.scheme == "file":
            target = Path(unquote(url.path))
            if target == index.resolve() and url.fragment:
                if anchors and unquote(url.fragment) not in page.ids:
                    missing.append(f"{ref['raw']} (no element with that id)")
            elif not target.is_file():
                missing.append(f"<{ref['tag']} {ref['attr']}={ref['raw']!r}> -> {target}")
        elif url.scheme in ("http", "https"):
            remote.append(ref["url"])
        elif url.scheme not in ("data", "mailto"):
            missing.append(f"{ref['raw']} (scheme {url.scheme!r})")
    assert missing == [], f"{index}: links that do not resolve"
    return page, remote


def test_synthetic_report_with_hostile_names(browser, artifacts, report_data, tmp_path):
    """The report writer's page (names with <script> and ../, figures, gallery) is clean:
    the escaped names never run, every figure and every linked file exists."""
    out = tmp_path / "report"
    write_report(report_data, out, bar_metrics=["pixel_auroc"])
    page, remote = check_page(browser, out / "index.html", artifacts, "synthetic")
    assert any(i["src"].startswith("figures/") for i in page.images)
    assert any(ref["raw"] == "results.csv" for ref in page.links)
    assert remote == []


def test_nav_links_only_to_sections_that_exist(browser, artifacts, report_data, tmp_path):
    out = tmp_path / "report"
    write_report(report_data, out, figures=False)
    check_page(browser, out / "index.html", artifacts, "synthetic_no_figures", images=False)


def test_check_page_catches_broken_pages(browser, artifacts, tmp_path):
    """The checks can fail: a script error, a CSP violation, a missing image and a
    dangling link are each reported."""
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; img-src 'self'\"></head><body>"
        "<img src='nope.png'><a href='gone.csv'>x</a><a href='#nowhere'>y</a>"
        "<script>console.error('boom')</script></body></html>"
    )
    page = browser.load(tmp_path / "index.html")
    assert page.scripts == 1
    text = "\n".join(page.errors)
    assert "CSP violation" in text or "Content Security Policy" in text
    assert "nope.png" in text
    assert [i["complete"] and i["width"] > 0 for i in page.images] == [False]
    with pytest.raises(AssertionError):
        check_page(browser, tmp_path / "index.html", artifacts, "broken_page")


@pytest.mark.slow
def test_demo_report_in_browser(browser, artifacts, tmp_path_factory):
    run = demo_run(tmp_path_factory)
    page, remote = check_page(browser, run / "index.html", artifacts, "demo_quick")
    names = {Path(i["src"]).name for i in page.images}
    assert names == {p.name for p in (run / "figures").iterdir()}  # every figure shown
    assert remote == [], "the report must not load anything from the network"


@pytest.mark.slow
def test_video_demo_report_in_browser(browser, artifacts, tmp_path_factory):
    run = demo_run(tmp_path_factory, video=True)
    page, remote = check_page(browser, run / "index.html", artifacts, "video_quick")
    names = {Path(i["src"]).name for i in page.images}
    assert names == {p.name for p in (run / "figures").iterdir()}
    assert remote == []
