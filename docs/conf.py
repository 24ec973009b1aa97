"""
Sphinx configuration of the narrative documentation: Markdown pages (MyST)
in this folder. The API reference is built separately by pydoctor (see
[tool.pydoctor] in pyproject.toml) into the same output, under api/.
"""

import twisted_caps

project = "twisted-caps"
author = "the twisted-caps authors"
copyright = "the twisted-caps authors, MIT licence"
release = version = twisted_caps.__version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# Anchors for headings, so pages can link to a section: [`--workers N`](limits.md#workers-n).
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = f"twisted-caps {release}"
