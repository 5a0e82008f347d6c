"""lxbsm-tools: user space for the lxbsm kernel audit module."""

__version__ = "0.1.0"
