"""caramba-plugin-example: a caramba plugin.

Importing this package does not import torch; caramba loads :mod:`caramba_plugin_example.plugin`
through the ``caramba`` entry point and imports each component's module only when it is used.
"""

__version__ = "0.1.0"
