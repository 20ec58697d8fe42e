"""Headless Chromium for tests: open a page as a person's browser would and report what it saw.

`look` opens a copy of the page with a small script added at the top of its head. The script
records every console error and warning and every error event (a failed image, a script
error) from the first moment, and after the load event writes what the page shows into the
DOM: each image's decoded and displayed size and its ``data-*`` attributes, the page's
scroll width, and the text of its sections. Chromium's ``--dump-dom`` prints that DOM, so the
test reads the rendered page, not the file it wrote. Console lines Chromium itself logs
(``--enable-logging=stderr``) are returned too: a page without scripts of its own logs none.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
WINDOW = (1280, 4000)

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")

_PROBE = """<script id="flopcast-probe">
(function () {
  var seen = [];
  ["error", "warn"].forEach(function (level) {
    var original = console[level];
    console[level] = function () {
      seen.push(level + ": " + Array.prototype.join.call(arguments, " "));
      original.apply(console, arguments);
    };
  });
  window.addEventListener("error", function (e) {
    var t = e.target || {};
    seen.push("error event: " + (e.message || (t.tagName + " " + (t.src || "").slice(0, 60))));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    seen.push("rejection: " + e.reason);
  });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (im) {
      return {alt: im.alt, complete: im.complete, natural_width: im.naturalWidth,
              natural_height: im.naturalHeight, client_width: im.clientWidth,
              width_attr: Number(im.getAttribute("width")),
              min_font_pt: Number(im.dataset.minFontPt),
              px_per_inch: Number(im.dataset.pxPerInch)};
    });
    var sections = {};
    Array.prototype.forEach.call(document.querySelectorAll("section[id]"), function (s) {
      sections[s.id] = s.innerText;
    });
    var out = document.createElement("pre");
    out.id = "flopcast-seen";
    out.textContent = JSON.stringify({errors: seen, images: images, sections: sections,
      scroll_width: document.documentElement.scrollWidth, window_width: window.innerWidth});
    document.body.appendChild(out);
  });
})();
</script>"""


def _run(args: list[str], tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args],
                          capture_output=True, text=True, timeout=timeout)


def look(page: Path, tmp: Path) -> dict:
    """What Chromium shows for ``page``: {errors, images, sections, scroll_width,
    window_width, console} (``console``: the console lines Chromium logged)."""
    text = page.read_text(encoding="utf-8")
    probed = tmp / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    done = _run(["--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri()], tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="flopcast-seen">(.*?)</pre>', done.stdout, re.S)
    assert found, "the page's load event never came: " + done.stdout[-500:]
    seen = json.loads(html.unescape(found.group(1)))
    seen["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return seen


def screenshot(page: Path, png: Path, tmp: Path) -> Path:
    """A screenshot of ``page`` in a `WINDOW`-sized window."""
    done = _run([f"--screenshot={png}", page.as_uri()], tmp)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return png
