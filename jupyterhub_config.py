"""JupyterHub configuration for OneLab: load the settings, hand them to hub.configure.

Settings live in onelab.yaml / ONELAB_* variables (see docs/settings.md); nothing to edit here.
"""

from hub.configure import configure
from onelab.settings import load

configure(c, load())  # noqa: F821 - `c` is given by JupyterHub
