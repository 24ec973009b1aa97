# -*- test-case-name: tests.test_docs_site -*-
"""
Sphinx configuration of the site: Markdown pages (MyST) in this folder, and
the API reference, which pydoctor builds from the docstrings into the same
output, under api/, during the same sphinx-build (its settings are under
[tool.pydoctor] in pyproject.toml).
"""

from pathlib import Path

import twisted_caps

project = "twisted-caps"
author = "the twisted-caps authors"
copyright = "the twisted-caps authors, MIT licence"
release = version = twisted_caps.__version__

#: The project's root, where pyproject.toml holds pydoctor's settings.
ROOT = Path(__file__).resolve().parent.parent

extensions = ["myst_parser", "pydoctor.sphinx_ext.build_apidocs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "api-templates"]
# Anchors for headings, so pages can link to a section: [`--workers N`](limits.md#workers-n).
myst_heading_anchors = 3

# The API reference lands in api/ of whatever folder sphinx-build writes to,
# so the pages' links to it work however the site is built.
# The paths are absolute so that sphinx-build may run from any folder.
pydoctor_args = [
    f"--config={ROOT / 'pyproject.toml'}",
    f"--add-package={ROOT / 'twisted_caps'}",
    f"--template-dir={ROOT / 'docs' / 'api-templates'}",
    "--html-output={outdir}/api",
]

# furo: a column wide enough for a command line and caps-check's output.
html_theme = "furo"
html_title = f"twisted-caps {release}"
html_static_path = ["_static"]
html_css_files = ["caps.css"]
