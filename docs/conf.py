"""Sphinx configuration: MyST pages, furo theme, API reference from the docstrings."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "refresh_middleware"
author = "The refresh_middleware developers"
copyright = "the refresh_middleware developers"
release = _version("refresh-middleware")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.graphviz",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_intersphinx", "examples"]
root_doc = "index"

# Single backticks in docstrings are references to Python objects, written as in the code.
default_role = "py:obj"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference -------------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- links to other projects ---------------------------------------------------------------------

# Each project's inventory is fetched from its site; when that fails (a machine without
# internet, as CI is) the empty local inventory is used instead, which Sphinx reports only as
# information. References then render as code without links, and the build still passes with
# warnings as errors.
_OFFLINE = "_intersphinx/empty.inv"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", (None, _OFFLINE)),
    "trio": ("https://trio.readthedocs.io/en/stable", (None, _OFFLINE)),
    "wrapt": ("https://wrapt.readthedocs.io/en/latest", (None, _OFFLINE)),
}
intersphinx_timeout = 5

# -- diagrams --------------------------------------------------------------------------------------

# Rendered to SVG by Graphviz's `dot` at build time: the built site needs no network to show them.
graphviz_output_format = "svg"
graphviz_dot_args = [
    "-Gbgcolor=white",
    "-Gfontname=Helvetica",
    "-Nfontname=Helvetica",
    "-Efontname=Helvetica",
    "-Gfontsize=12",
    "-Nfontsize=12",
    "-Efontsize=11",
]

# -- doctest ---------------------------------------------------------------------------------------

# The names the docstring examples use without importing them.
doctest_global_setup = """
from refresh_middleware import is_unauthorized_error, refresh_on_401
from refresh_middleware.classify import GateAction, ItemKind, StreamGate, kind_of
from refresh_middleware.events import redact
from refresh_middleware.testing import RefreshCounter, ScriptedProvider, SyncScriptedProvider
"""

# -- HTML --------------------------------------------------------------------------------------

html_theme = "furo"
html_title = "refresh_middleware"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
