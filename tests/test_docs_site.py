"""
The site as docs/contributing.md builds it: one sphinx-build makes the pages
and the API reference, linked both ways, and at 1280 pixels in a real
browser (headless Chromium) neither the index nor the grading page, nor any
code block on them, scrolls sideways.
"""

import atexit
import functools
import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.servers import BIN, REQUIRE_TOOLS, require_program

PROJECT = Path(__file__).resolve().parent.parent
#: Seconds for the whole build, pydoctor included, on a loaded machine.
BUILD_SECONDS = 300
#: Seconds for the browser to load a page and measure it.
BROWSER_SECONDS = 120
#: Run in the page once loaded: the widths that would scroll, written into
#: the page so that --dump-dom shows them.
MEASURE = """
<script>
window.addEventListener("load", function () {
  var root = document.documentElement;
  var found = [];
  if (root.scrollWidth > root.clientWidth) {
    found.push("page " + root.scrollWidth + " > " + root.clientWidth);
  }
  document.querySelectorAll("pre").forEach(function (pre) {
    if (pre.scrollWidth > pre.clientWidth) {
      found.push(pre.scrollWidth + " > " + pre.clientWidth + ": "
                 + pre.textContent.split("\\n")[0].slice(0, 60));
    }
  });
  var verdict = document.createElement("div");
  verdict.id = "sideways";
  verdict.textContent = "[" + found.length + "] " + found.join(" | ");
  document.body.appendChild(verdict);
});
</script>
"""


def sphinx_build() -> str:
    """The sphinx-build of this environment (the C{docs} extra), or skip without it."""
    path = shutil.which("sphinx-build", path=BIN)
    if path is None:
        if REQUIRE_TOOLS:
            raise AssertionError("sphinx-build is not installed (the docs extra)")
        raise SkipTest("sphinx-build is not installed (the docs extra)")
    return path


@functools.cache
def built_site() -> Path:
    """
    The site, built once per test process into a scratch folder (removed at
    exit) by the command docs/contributing.md gives.
    """
    site = Path(tempfile.mkdtemp(prefix="caps-site-")).resolve()
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    command = [sphinx_build(), "-W", "--keep-going", "-q", "-b", "html", "docs", str(site)]
    done = subprocess.run(
        command, cwd=PROJECT, capture_output=True, text=True, timeout=BUILD_SECONDS
    )
    if done.returncode:
        raise AssertionError(f"{command} failed:\n{done.stdout}{done.stderr}")
    return site


class SiteTests(SynchronousTestCase):
    """The site as the contributors' page builds it, in a real browser."""

    def setUp(self) -> None:
        self.site = built_site()

    def test_the_one_command_builds_the_api_reference_into_the_site(self) -> None:
        api = (self.site / "api" / "index.html").read_text()
        self.assertIn("pydoctor", api)
        self.assertTrue((self.site / "api" / "twisted_caps.check.html").exists())

    def test_the_pages_link_to_the_api_reference(self) -> None:
        for page in ("index.html", "grading.html"):
            targets = re.findall(r'href="([^"#]*api/index\.html)"', (self.site / page).read_text())
            self.assertNotEqual(targets, [], page)
            for target in targets:
                self.assertTrue((self.site / target).resolve().is_file(), target)

    def test_the_api_reference_links_back_to_the_site(self) -> None:
        for page in ("index.html", "twisted_caps.check.html"):
            text = (self.site / "api" / page).read_text()
            links = re.findall(r'<a href="([^"]+)" class="projecthome">twisted-caps</a>', text)
            links += re.findall(r'<a href="([^"]+)">\S twisted-caps documentation</a>', text)
            self.assertEqual(len(links), 3, page)  # the header's line, the title, the footer
            for back in links:
                self.assertEqual((self.site / "api" / back).resolve(), self.site / "index.html")

    def sideways(self, page: str) -> str:
        """What scrolls sideways on C{page} at 1280 pixels, as the browser measures it."""
        chromium = require_program("chromium")
        measured = self.site / f"measured-{page}"
        measured.write_text((self.site / page).read_text().replace("</body>", MEASURE + "</body>"))
        profile = Path(self.mktemp()).resolve()
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--window-size=1280,2000",
                "--virtual-time-budget=5000",
                "--dump-dom",
                measured.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=BROWSER_SECONDS,
        )
        found = re.search(r'<div id="sideways">([^<]*)</div>', done.stdout)
        if found is None:
            raise AssertionError(f"chromium measured nothing:\n{done.stderr[-2000:]}")
        return html.unescape(found.group(1))

    def test_the_index_does_not_scroll_sideways(self) -> None:
        self.assertEqual(self.sideways("index.html"), "[0] ")

    def test_the_grading_page_does_not_scroll_sideways(self) -> None:
        """caps-check's output wraps; commands, code and JSON fit the column."""
        self.assertEqual(self.sideways("grading.html"), "[0] ")

    def test_the_measurement_sees_a_code_block_that_scrolls(self) -> None:
        wide = "<pre>" + "x" * 400 + "</pre>"
        index = (self.site / "index.html").read_text()
        (self.site / "wide.html").write_text(index.replace("</h1>", "</h1>" + wide, 1))
        self.assertRegex(self.sideways("wide.html"), r"^\[1\] \d+ > \d+: x+$")
