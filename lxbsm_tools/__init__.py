"""lxbsm-tools: user space for the lxbsm kernel audit module."""


def __getattr__(name: str) -> str:
    """__version__, looked up when asked for: importlib.metadata is slow to import
    (seconds where the file system answers slowly), and no tool needs it to start."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        # The top-level VERSION file, through the installed distribution's metadata.
        return metadata.version("lxbsm-tools")
    except metadata.PackageNotFoundError:
        return "unknown"
