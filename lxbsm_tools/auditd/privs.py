"""Least privilege: drop to the audit user with no capabilities, then seccomp.

The device and the trail directories are opened as root first.  Then every
capability leaves the bounding set, the process becomes ``audit:audit``
(which empties the permitted, effective and ambient sets), no_new_privs is
set, and a seccomp filter built with libseccomp (loaded through ctypes, so
no Python binding is needed) allows only the system calls the daemon's loop
makes and kills the process on any other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import os
import pwd
from pathlib import Path

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000

# What the daemon's main loop needs (Python 3.11, glibc, x86-64), after every
# module it uses has been imported.
ALLOWED = (
    # memory
    "brk mmap munmap mremap mprotect madvise "
    # files and directories (trails, journal, configuration on reload)
    "read pread64 write pwrite64 writev readv openat open close lseek fstat newfstatat stat lstat "
    "statx fstatfs statfs getdents64 readlink readlinkat rename renameat renameat2 unlink "
    "unlinkat symlink symlinkat mkdir mkdirat fchmod chmod fsync fdatasync ftruncate fcntl "
    "ioctl access faccessat faccessat2 getcwd dup dup2 dup3 mknodat "
    # waiting and time
    "poll ppoll select pselect6 epoll_wait epoll_ctl clock_gettime clock_nanosleep nanosleep "
    "gettimeofday time futex sched_yield "
    # sockets already open (control socket)
    "accept accept4 recvfrom recvmsg sendto sendmsg getsockopt setsockopt shutdown getsockname "
    "getpeername pipe2 "
    # signals and process
    "rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack getpid gettid getuid geteuid getgid "
    "getegid getppid getrandom uname sysinfo prlimit64 exit exit_group restart_syscall "
    "sched_getaffinity set_robust_list rseq tgkill"
).split()
# Asked for by glibc's name service (nscd) when audit_user is re-read: refused, not fatal.
REFUSED = ("socket", "connect")


class PrivError(Exception):
    pass


def audit_ids(user: str) -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivError(
            f"no user '{user}': create it (useradd --system --no-create-home "
            f"--shell /usr/sbin/nologin {user}) or pass --user"
        ) from None
    try:
        gid = grp.getgrnam(user).gr_gid
    except KeyError:
        gid = pw.pw_gid
    return pw.pw_uid, gid


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(*args: int) -> None:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(*args, *([0] * (5 - len(args)))) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({args[0]}): {os.strerror(e)}")


def last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except OSError:
        return 40


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _capset(caps: tuple[int, ...]) -> None:
    """Permitted and effective sets: exactly @caps; inheritable: none."""
    data = (_CapData * 2)()
    for cap in caps:
        data[cap // 32].effective |= 1 << (cap % 32)
        data[cap // 32].permitted |= 1 << (cap % 32)
    libc = _libc()
    if libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def drop_privileges(uid: int, gid: int, keep: tuple[int, ...] = ()) -> None:
    """Become uid:gid with no capability left anywhere and no way to gain
    one; but the capabilities @keep (the baseline helper's
    CAP_DAC_READ_SEARCH), which stay in the bounding, permitted and
    effective sets."""
    for cap in range(last_cap() + 1):
        if cap in keep:
            continue
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
    _prctl(PR_SET_KEEPCAPS, 1 if keep else 0)
    os.setgroups([gid])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if keep:
        _capset(keep)
        _prctl(PR_SET_KEEPCAPS, 0)
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise PrivError("libseccomp is not installed (apt-get install libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def install_seccomp(allowed: tuple[str, ...] | list[str] = ALLOWED) -> int:
    """Load a filter allowing ``allowed`` (and refusing REFUSED with EACCES);
    anything else kills the process.  Returns how many rules went in."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    lib = _libseccomp()
    ctx = lib.seccomp_init(SCMP_ACT_KILL_PROCESS)
    if not ctx:
        raise PrivError("seccomp_init failed")
    rules = 0
    try:
        for names, action in ((allowed, SCMP_ACT_ALLOW), (REFUSED, SCMP_ACT_ERRNO | errno.EACCES)):
            for name in names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:  # not a system call on this architecture
                    continue
                rc = lib.seccomp_rule_add(ctx, action, nr, 0)
                if rc < 0:
                    raise PrivError(f"seccomp_rule_add({name}): {os.strerror(-rc)}")
                rules += 1
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise PrivError(f"seccomp_load: {os.strerror(-rc)}")
    finally:
        lib.seccomp_release(ctx)
    return rules
