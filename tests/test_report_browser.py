"""The HTML report in a real browser (headless Chromium): it loads, its script raises nothing
and logs no error, every figure decodes, long tables are collapsed, and nothing makes the page
scroll sideways, at a desktop width and a narrow one.

No browser driver is needed: a copy of the page gets a first script that collects errors
(window errors, failed resources, console.error) and, once the page has loaded, writes what it
found into the page, which `chromium --dump-dom` prints. Skipped only when Chromium is not
installed (.ci/run installs Debian's `chromium` first).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from ttplan.devices.planning import device_context
from ttplan.reports import report as report_module
from ttplan.reports.predict import device_predictor

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium is not installed")

# Runs before anything else on the page; its findings go into <pre id="ttplan-check">.
COLLECTOR = """<script>
(function () {
  var problems = [];
  window.addEventListener("error", function (e) {
    var where = e.target && e.target !== window ? (e.target.tagName || "resource") : "script";
    problems.push(where + ": " + (e.message || "failed to load"));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    problems.push("unhandled rejection: " + e.reason);
  });
  var original = console.error;
  console.error = function () {
    problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var root = document.documentElement;
    var images = Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, width: img.naturalWidth, shown: img.getBoundingClientRect().width};
    });
    var wide = Array.prototype.filter.call(document.body.querySelectorAll("*"), function (el) {
      return el.getBoundingClientRect().right > root.clientWidth + 1
        && !el.closest(".scroll") && !el.closest("details:not([open])");
    }).map(function (el) { return el.tagName + "." + el.className; });
    var out = document.createElement("pre");
    out.id = "ttplan-check";
    out.textContent = JSON.stringify({
      problems: problems, images: images, overflowing: wide.slice(0, 5),
      scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
      details: document.querySelectorAll("details").length,
      tables: document.querySelectorAll("table").length,
      title: document.title});
    document.body.appendChild(out);
  });
})();
</script>"""


def browse(page_html: str, width: int) -> dict:
    """Load the page in headless Chromium at `width` CSS pixels; what the collector found."""
    instrumented = page_html.replace('<meta charset="utf-8">',
                                     '<meta charset="utf-8">' + COLLECTOR, 1)
    assert instrumented != page_html
    with tempfile.TemporaryDirectory() as tmp:
        page = os.path.join(tmp, "report.html")
        with open(page, "w", encoding="utf-8") as handle:
            handle.write(instrumented)
        done = subprocess.run(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
             f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom",
             f"file://{page}"],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="ttplan-check">') + len('<pre id="ttplan-check">')
    return json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))


@pytest.fixture(scope="module")
def report_html():
    predictor = device_predictor(device_context("pi-zero-2"))
    built = report_module.build_report("mcunet-5fps", input_shape=(1, 3, 64, 64),
                                       whatif=report_module.WhatifAxes(compute="5%:60%:4"),
                                       predictor=predictor)
    return report_module.render_html(built)


@pytest.mark.parametrize("width", [1280, 700])
def test_the_report_in_a_browser(report_html, width):
    found = browse(report_html, width)
    assert found["problems"] == []
    assert found["title"].startswith("ttplan report: mcunet-5fps")
    assert len(found["images"]) == 4
    for image in found["images"]:
        assert image["width"] > 0, image  # the PNG decoded
        assert 0 < image["shown"] <= found["clientWidth"], image
    assert found["scrollWidth"] <= found["clientWidth"], found  # no sideways scrolling
    assert found["overflowing"] == []
    assert found["details"] >= 1  # the long tables are folded
    assert found["tables"] >= 5
