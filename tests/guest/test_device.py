"""The device node, its permissions, and the status ioctl."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import subprocess
from pathlib import Path

import pytest

from lxbsm_tools import uapi

from .conftest import DEVICE, load_module, python_as_nobody


def test_node_is_root_only_char_device() -> None:
    st = os.stat(DEVICE)
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.major(st.st_rdev) == 10  # misc device


def test_status_reports_version_and_geometry() -> None:
    fd = uapi.open_control()
    try:
        st = uapi.get_status(fd)
    finally:
        os.close(fd)
    assert st.abi_version == uapi.ABI_VERSION
    assert st.version == Path("/sys/module/lxbsm/version").read_text().strip()
    assert st.page_size == mmap.PAGESIZE
    assert st.data_size == 16 * 1024 * 1024  # the default ring_size_kb
    assert st.consumer_open is False
    assert st.producer_pos >= st.consumer_pos


def test_ring_size_parameter_rounds_up_to_power_of_two() -> None:
    load_module("ring_size_kb=100")
    fd = uapi.open_control()
    try:
        assert uapi.get_status(fd).data_size == 128 * 1024
    finally:
        os.close(fd)
    load_module()


def test_unknown_ioctl_is_enotty() -> None:
    import fcntl

    fd = uapi.open_control()
    try:
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, 0xB5FF, b"\0" * 8)
        assert e.value.errno == errno.ENOTTY
    finally:
        os.close(fd)


def test_unprivileged_user_cannot_open() -> None:
    r = python_as_nobody("import os; os.open('/dev/lxbsm', os.O_RDONLY)")
    assert r.returncode != 0
    assert "PermissionError" in r.stderr


def test_root_without_audit_capabilities_cannot_open() -> None:
    # The node's mode lets root in; the module itself demands CAP_AUDIT_*.
    code = (
        "import os, sys\n"
        "for flags in (os.O_RDONLY, os.O_RDWR):\n"
        "    try:\n"
        "        os.close(os.open('/dev/lxbsm', flags))\n"
        "        sys.exit('opened')\n"
        "    except PermissionError:\n"
        "        pass\n"
    )
    r = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-audit_read,-audit_control,-audit_write",
            "python3",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_control_open_cannot_map_or_poll() -> None:
    fd = uapi.open_control()
    try:
        with pytest.raises(OSError) as e:
            mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        assert e.value.errno in (errno.EACCES, errno.EPERM)
    finally:
        os.close(fd)
