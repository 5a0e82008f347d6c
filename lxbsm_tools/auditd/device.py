"""Find /dev/lxbsm with pyudev, and wait for it when the module is not loaded yet."""

from __future__ import annotations

import os
import time

from lxbsm_tools import uapi


class NoDevice(Exception):
    pass


def _udev_node(name: str) -> str | None:
    import pyudev

    ctx = pyudev.Context()
    for dev in ctx.list_devices(subsystem="misc", sys_name=name):
        node = dev.device_node
        if node:
            return str(node)
    return None


def find_device(path: str = uapi.DEVICE, wait: float = 0.0) -> str:
    """The device node: ``path`` if it exists, else what udev knows of the
    ``lxbsm`` misc device; waits up to ``wait`` seconds for the module."""
    name = os.path.basename(path)
    deadline = time.monotonic() + wait
    monitor = None
    while True:
        if os.path.exists(path):
            return path
        node = _udev_node(name)
        if node and os.path.exists(node):
            return node
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if monitor is None:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
            monitor.filter_by("misc")
            monitor.start()
            continue  # re-check: the module may have come while we subscribed
        dev = monitor.poll(timeout=min(left, 1.0))
        if dev is not None and dev.action == "add" and dev.sys_name == name:
            # devtmpfs makes the node as the uevent goes out; give it a moment.
            for _ in range(50):
                if os.path.exists(path):
                    return path
                time.sleep(0.01)
    waited = f" after waiting {wait:g} s" if wait > 0 else ""
    raise NoDevice(
        f"{path} does not exist{waited}: the lxbsm module is not loaded "
        "(insmod lxbsm.ko, or modprobe lxbsm after make install; "
        "--wait-device SECONDS waits for it)"
    )
