"""The Debian packages (make deb), installed, used and purged as a user would.

Run without --load (the packages bring the module), after `make deb`:

    lxbsm-vm --kernel 6.12 --rundir build/vm/deb-6.12 -- \\
        python3 -m pytest -p no:cacheprovider -q tests/guest/test_packages.py

The guest's root file system is the host's, read-only over 9p.  The test
makes a writable view of it, an overlayfs with a tmpfs upper layer, and
chroots there (with /proc, /sys, /dev and /run of the guest), so apt, dpkg
and DKMS change only the tmpfs.  In that view, with no network:

- `apt-get install ./lxbsm-dkms_<v>_all.deb ./lxbsm-tools_<v>_all.deb`
  (what the packages depend on is installed on the host by make deps);
- DKMS has built and installed the module for the running kernel, and
  `modprobe lxbsm` loads it (/dev/lxbsm appears);
- the daemon starts from the installed unit's ExecStart command line (there
  is no systemd in the guest) and writes a trail in /var/audit whose first
  record is its startup record;
- `apt-get purge` of both stops the daemon and unloads the module (the
  packages' prerm scripts), and leaves no file of the packages behind:
  neither the ones `dpkg -L` listed, nor any other file with lxbsm in its
  name outside /var/audit in the upper layer (where everything written
  since the start is); the trails stay.

Every missing piece (the .debs, dkms, the headers of the running kernel)
fails the test: nothing here skips.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lxbsm_tools.auditd.trail import TRAIL_RE
from lxbsm_tools.bsm import read_trail

from .conftest import REPO, module_loaded

DEBS = REPO / "build" / "deb"
VERSION = (REPO / "VERSION").read_text().strip()
PACKAGES = ("lxbsm-dkms", "lxbsm-tools")
STARTUP, SHUTDOWN = 45000, 45001
# Written by apt and dpkg about what they did, not files of the packages.
# A root shell's environment in the chroot (not the harness', whose PATH has the .venv).
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
}
BOOKKEEPING = ("var/lib/dpkg/", "var/log/", "var/cache/", "var/lib/apt/", "var/audit/")


@pytest.fixture(autouse=True)
def guest_with_module() -> Iterator[None]:
    """Replaces conftest's: here the packages bring the module, so none is loaded."""
    assert os.environ.get("LXBSM_IN_GUEST") == "1", (
        "guest tests run only inside an lxbsm-vm guest: lxbsm-vm --kernel <version> -- "
        "python3 -m pytest tests/guest/test_packages.py"
    )
    assert not module_loaded(), "run this test without --load: the packages load the module"
    yield


@dataclass
class Chroot:
    """A writable view of the guest's root (overlayfs, tmpfs upper) to chroot into."""

    base: Path
    mounts: list[Path] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    def mount(self, target: Path, *args: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        self.mounts.append(target)

    def setup(self) -> None:
        self.mount(self.base, "-t", "tmpfs", "tmpfs")
        for d in ("upper", "work"):
            (self.base / d).mkdir()
        opts = f"lowerdir=/,upperdir={self.upper},workdir={self.base / 'work'}"
        self.mount(self.root, "-t", "overlay", "overlay", "-o", opts)
        for d in ("proc", "sys", "dev", "run"):
            self.mount(self.root / d, "--rbind", f"/{d}")
        self.mount(self.root / "tmp", "-t", "tmpfs", "tmpfs")

    def teardown(self) -> None:
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-R", "-l", str(m)], check=False, capture_output=True)

    def run(self, cmd: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """@cmd (a shell command line) in the chroot, as root, with no network in reach."""
        return subprocess.run(
            ["chroot", str(self.root), "/bin/sh", "-c", cmd],
            env=CHROOT_ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def must(self, cmd: str, timeout: float = 600) -> str:
        p = self.run(cmd, timeout)
        assert p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def logged(self, name: str, cmd: str, timeout: float) -> str:
        """@cmd, its output written as it comes to @name in the run's files (or /tmp)."""
        log = Path(os.environ.get("LXBSM_RUNDIR", "/tmp"), name)
        with log.open("w") as out:
            try:
                rc = subprocess.run(
                    ["chroot", str(self.root), "/bin/sh", "-c", cmd],
                    env=CHROOT_ENV,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{cmd}: still running after {timeout:.0f} s; its output: {log}"
                ) from None
        text = log.read_text()
        assert rc == 0, f"{cmd}: exit {rc}\n{text}"
        return text

    def step(self, what: str) -> None:
        """Note how long the test has run when @what is done (also in the run's files)."""
        self.times.append(f"{time.monotonic() - self.started:7.1f} s  {what}")
        rundir = os.environ.get("LXBSM_RUNDIR")
        if rundir:
            Path(rundir, "packages-times.txt").write_text("\n".join(self.times) + "\n")


@pytest.fixture
def chroot() -> Iterator[Chroot]:
    base = Path(tempfile.mkdtemp(prefix="lxbsm-pkg-", dir="/tmp"))
    c = Chroot(base)
    try:
        c.setup()
        yield c
    finally:
        print("\n".join(["test_packages timings:", *c.times]))
        c.teardown()
        if module_loaded():
            subprocess.run(["rmmod", "lxbsm"], check=False)


def package_files(c: Chroot, pkg: str) -> list[str]:
    """What dpkg installed for @pkg, files and directories."""
    return [line for line in c.must(f"dpkg -L {pkg}").splitlines() if line.startswith("/")]


def own_dirs(c: Chroot, listed: list[str]) -> list[str]:
    """The directories in @listed that only our packages put files in."""
    mine = (
        "/usr/src/lxbsm-",
        "/usr/lib/python3/dist-packages/lxbsm_tools",
        "/usr/share/doc/lxbsm-",
    )
    return [p for p in listed if p.startswith(mine)]


def trails(root: Path) -> list[Path]:
    """The trails in /var/audit, oldest first: files named as OpenBSM names them
    (not the daemon's journal, .lxbsm-auditd.journal, which is no trail)."""
    d = root / "var" / "audit"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and TRAIL_RE.fullmatch(p.name))


def exec_start(c: Chroot) -> list[str]:
    unit = c.root / "lib/systemd/system/lxbsm-auditd.service"
    assert unit.is_file(), f"{unit} is not installed"
    lines = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, f"one ExecStart= expected in the unit: {lines}"
    return shlex.split(lines[0].removeprefix("ExecStart="))


def test_install_load_run_purge(chroot: Chroot) -> None:
    c = chroot
    kver = os.uname().release
    debs = [DEBS / f"{p}_{VERSION}_all.deb" for p in PACKAGES]
    for deb in debs:
        assert deb.is_file(), f"{deb} is missing: run make deb first"
    for need in ("usr/sbin/dkms", "usr/bin/apt-get", f"lib/modules/{kver}/build/Makefile"):
        assert (c.root / need).exists(), f"/{need} is missing on the host: run make deps"
    # DKMS builds for the running kernel and for the newest one in /boot: the
    # view keeps only the running kernel's config there (a host with one
    # kernel), as compiling twice under TCG would double the test's time.
    for cfg in (c.root / "boot").glob("config-*"):
        if cfg.name != f"config-{kver}":
            cfg.unlink()
    (c.root / "tmp" / "debs").mkdir()
    for deb in debs:
        (c.root / "tmp" / "debs" / deb.name).write_bytes(deb.read_bytes())
    c.step("writable view ready")

    # The guest has no network: whatever is not installed already fails here.
    # Measured under TCG on a busy 2-core host (6.12): 1476 s for the install,
    # about 19 min of it DKMS compiling, 4 of it depmod; the purge's depmod again.
    # (Not --no-download: with it apt refuses local .debs, "Pathname to
    # install is not absolute".)
    names = " ".join(f"./{d.name}" for d in debs)
    out = c.logged(
        "apt-install.log",
        f"cd /tmp/debs && apt-get install -y -o Acquire::Retries=0 {names}",
        timeout=2700,
    )
    c.step("apt-get install (DKMS build included)")
    status = c.must("dkms status lxbsm")
    assert f"lxbsm/{VERSION}, {kver}, x86_64: installed" in status, f"{status}\n{out}"
    ko = c.must(f"modinfo -k {kver} -F filename lxbsm").strip()
    # DKMS compresses the module as the kernel's own are (xz on Debian).
    assert ko in (f"/lib/modules/{kver}/updates/dkms/lxbsm.ko{z}" for z in ("", ".xz", ".zst")), ko
    assert c.must(f"modinfo -k {kver} -F version lxbsm").strip() == VERSION
    listed = {p: package_files(c, p) for p in PACKAGES}
    assert "/etc/security/audit_control" in listed["lxbsm-tools"]
    assert "/usr/lib/modules-load.d/lxbsm.conf" in listed["lxbsm-dkms"]
    c.must("getent passwd audit")

    c.must("modprobe lxbsm")
    assert module_loaded(), "modprobe lxbsm did not load the module"
    for _ in range(50):
        if Path("/dev/lxbsm").exists():
            break
        time.sleep(0.1)
    assert Path("/dev/lxbsm").exists(), "/dev/lxbsm did not appear"
    c.step("modprobe lxbsm")

    # No systemd in the guest: the unit's command line, by hand.
    cmd = exec_start(c)
    assert cmd[0] == "/usr/bin/lxbsm-auditd", cmd
    log = c.base / "auditd.log"
    with log.open("wb") as err:
        daemon = subprocess.Popen(
            ["chroot", str(c.root), *cmd], stdout=err, stderr=subprocess.STDOUT, env=CHROOT_ENV
        )
    try:
        deadline = time.monotonic() + 180
        found: list[Path] = []
        while time.monotonic() < deadline and not found:
            assert daemon.poll() is None, f"lxbsm-auditd exited: {log.read_text()}"
            found = [t for t in trails(c.root) if t.stat().st_size > 0]
            time.sleep(0.5)
        assert found, f"no trail in /var/audit after 180 s: {log.read_text()}"
        c.step("lxbsm-auditd started, trail written")
        # The installed praudit reads it; its first record is the daemon's startup.
        text = c.must(f"lxbsm-praudit -l {shlex.quote('/var/audit/' + found[0].name)}")
        assert "audit daemon started" in text and "Audit startup" in text, text
        c.step("lxbsm-praudit read the trail")
        # Every command of pyproject.toml is installed; lxbsm-recover (and merge3) imports.
        for name in (
            "lxbsm-praudit",
            "lxbsm-auditreduce",
            "lxbsm-audit",
            "lxbsm-recover",
            "lxbsm-forward",
        ):
            c.must(f"test -x /usr/bin/{name}")
        rec = c.run("lxbsm-recover --journal /var/lib/lxbsm/none log")
        assert rec.returncode == 2 and "not a journal directory" in rec.stderr, rec
        c.step("lxbsm-recover ran")
        fwd = c.must("lxbsm-forward --check --control /etc/security/audit_control")
        assert "configuration OK, 0 outputs" in fwd, fwd
        c.step("lxbsm-forward checked the configuration")

        out = c.logged("apt-purge.log", f"apt-get purge -y {' '.join(PACKAGES)}", timeout=1200)
        c.step("apt-get purge")
        # lxbsm-tools' prerm stopped the daemon, lxbsm-dkms' prerm unloaded the module.
        assert daemon.wait(60) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(30)
    assert not module_loaded(), f"lxbsm is still loaded after the purge\n{out}"

    for pkg in PACKAGES:
        # Purged: dpkg forgot it, or knows it as not installed (not "config-files").
        st = c.run(f"dpkg-query -W -f='${{Status}}' {pkg}").stdout
        assert st in ("", "unknown ok not-installed", "purge ok not-installed"), (pkg, st)
    left = [
        p
        for pkg in PACKAGES
        for p in listed[pkg]
        if (c.root / p.lstrip("/")).exists()
        and (not (c.root / p.lstrip("/")).is_dir() or p in own_dirs(c, listed[pkg]))
    ]
    assert not left, f"files of the packages left after the purge: {left}"
    strays = [
        str(p.relative_to(c.upper))
        for p in c.upper.rglob("*")
        if "lxbsm" in p.name and not str(p.relative_to(c.upper)).startswith(BOOKKEEPING)
    ]
    assert not strays, f"files with lxbsm in their name left after the purge: {strays}"

    # The trails stay, closed: startup first, shutdown last.
    kept = trails(c.root)
    assert kept, "the purge removed the trails"
    records = [r for t in kept for r in read_trail(str(t))]
    events = [r.event for r in records]
    assert events and events[0] == STARTUP and events[-1] == SHUTDOWN, events
    c.step("checked what the purge left")
