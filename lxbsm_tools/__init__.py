"""lxbsm-tools: user space for the lxbsm kernel audit module."""

from importlib import metadata

try:
    # The top-level VERSION file, through the installed distribution's metadata.
    __version__ = metadata.version("lxbsm-tools")
except metadata.PackageNotFoundError:
    __version__ = "unknown"
