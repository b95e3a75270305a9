"""cachetui: BuildKit's cache manager in Python, with a terminal dashboard.

The package root stays light: ``import cachetui.core`` must not pull in Textual.
"""

__version__ = "0.1.0"
