"""lxbsm-vm's logic that needs no guest: kernel choice, splat detection, script."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxbsm_tools import vm

KERNELS = [
    "6.1.0-56-amd64",
    "6.1.0-56-cloud-amd64",
    "6.12.95+deb12-amd64",
    "6.12.95+deb12-rt-amd64",
]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("6.1", "6.1.0-56-amd64"),
        ("6.12", "6.12.95+deb12-amd64"),
        ("6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64"),
    ],
)
def test_resolve_kernel_picks_the_generic_flavour(spec: str, want: str) -> None:
    assert vm.resolve_kernel(spec, KERNELS) == want


def test_missing_kernel_names_the_fix() -> None:
    with pytest.raises(vm.VMError) as e:
        vm.resolve_kernel("6.6", KERNELS)
    assert "make deps" in str(e.value)
    assert "6.12.95+deb12-amd64" in str(e.value)


def test_ambiguous_kernel_is_refused() -> None:
    with pytest.raises(vm.VMError, match="ambiguous"):
        vm.resolve_kernel("6.1", ["6.1.0-55-amd64", "6.1.0-56-amd64"])


def test_splat_lines_are_found_and_clean_lines_are_not() -> None:
    log = "\n".join(
        [
            "[    1.0] PCI: Using host bridge windows from ACPI; if necessary, report a bug",
            "[    2.0] lxbsm: version 0.1.0 loaded, ring 16384 KiB",
            "[    3.0] WARNING: CPU: 0 PID: 1 at kmod/main.c:10 lxbsm_init+0x10/0x20 [lxbsm]",
            "[    3.1] Call Trace:",
            "[    4.0] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "[    5.0] Oops: 0000 [#1] PREEMPT SMP NOPTI",
            "[    6.0] BUG: KASAN: use-after-free in lxbsm_ring_commit",
            "[    7.0] WARNING: possible circular locking dependency detected (lockdep)",
        ]
    )
    assert [line[:8] for line in vm.bad_lines(log)] == [
        "[    3.0",
        "[    3.1",
        "[    4.0",
        "[    5.0",
        "[    6.0",
        "[    7.0",
    ]


def test_guest_script_loads_runs_unloads_and_collects(tmp_path: Path) -> None:
    run = vm.Run(
        kernel="6.12.95+deb12-amd64",
        command=["echo", "it's"],
        ko=Path("/x/lxbsm.ko"),
        ko_params=["ring_size_kb=64"],
        shares=[tmp_path],
        memory="1G",
        cpus=2,
        timeout=60,
        rundir=tmp_path / "run",
    )
    script = run.guest_script()
    order = [
        "booted",
        "insmod /x/lxbsm.ko ring_size_kb=64",
        "echo 'it'\"'\"'s'",
        "echo $? >",
        "rmmod lxbsm",
        "dmesg >",
        "finished",
    ]
    # rindex: the insmod-failure branch also writes dmesg, rc and finished.
    positions = [script.rindex(s) for s in order]
    assert positions == sorted(positions)
    assert f"LXBSM_SHARE={tmp_path}" in script


def _run(tmp_path: Path, **kw: object) -> vm.Run:
    args: dict[str, object] = dict(
        kernel="6.1.0-57-amd64",
        command=["true"],
        ko=None,
        ko_params=[],
        shares=[tmp_path / "share"],
        memory="2G",
        cpus=2,
        timeout=60,
        rundir=tmp_path / "run",
    )
    args.update(kw)
    return vm.Run(**args)  # type: ignore[arg-type]


def test_guests_run_round_robin_tcg_unless_asked(tmp_path: Path) -> None:
    image, script = Path("/boot/vmlinuz-6.1.0-57-amd64"), tmp_path / "guest.sh"
    cmd = vm.vng_command(_run(tmp_path), "vng", image, script)
    assert "--qemu-opts=-accel tcg,thread=single" in cmd
    assert "--disable-kvm" in cmd and "--verbose" in cmd
    assert cmd[cmd.index("--run") + 1] == str(image)
    assert cmd[-2:] == ["--exec", f"sh {script}"]
    rw = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--rwdir"]
    assert rw == [str(tmp_path / "run"), str(tmp_path / "share")]
    multi = vm.vng_command(_run(tmp_path, tcg_threads="multi"), "vng", image, script)
    assert "--qemu-opts=-accel tcg,thread=multi" in multi
    assert vm.parse_args(["--kernel", "6.1", "--", "true"]).tcg_threads == "single"
    assert vm.parse_args(["--kernel", "6.1", "--tcg-threads", "multi", "--", "x"]).tcg_threads == (
        "multi"
    )


def test_list_shows_every_supported_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    rc = vm.main(["--list"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    listed = {r[0]: r for r in rows}
    supported = vm.supported_kernels()
    assert {"5.10", "6.1", "6.1-rt", "6.12", "6.12-rt", "6.12-bpo", "7.2", "7.3"} <= set(listed)
    for k in supported:
        assert listed[k.id][2] == k.version
        assert k.image.is_file()


def test_kernel_ids_resolve_to_their_versions() -> None:
    ids = {"6.12": "6.12.118+deb13-amd64", "6.12-bpo": "6.12.95+deb12-amd64"}
    assert vm.resolve_kernel("6.12", [], ids) == "6.12.118+deb13-amd64"
    assert vm.resolve_kernel("6.12-bpo", [], ids) == "6.12.95+deb12-amd64"
    assert vm.resolve_kernel("6.12.95+deb12-amd64", ["6.12.95+deb12-amd64"], ids) == (
        "6.12.95+deb12-amd64"
    )


def test_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vm.main(["--kernel", "6.12"])
    assert "no COMMAND given" in capsys.readouterr().err


def test_memory_error_reports_are_splats() -> None:
    """What slub_debug and KFENCE print for an overflow fails a run like an oops."""
    log = "\n".join(
        [
            "[    1.0] SLUB: HWalign=64, Order=0-3, MinObjects=0, CPUs=2, Nodes=1",
            "[    2.0] BUG kmalloc-64 (Tainted: G           OE     ): Right Redzone overwritten",
            "[    2.1] INFO: 0xffff8880031c8e40-0xffff8880031c8e40 @offset=3648. First byte",
            "[    3.0] BUG: KFENCE: out-of-bounds write in lxbsm_init+0x5a/0x80 [lxbsm]",
            "[    4.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "[    5.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:120]",
            "[    6.0] kfence: initialized - using 2097152 bytes for 255 objects",
        ]
    )
    assert [line[:8] for line in vm.bad_lines(log)] == [
        "[    2.0",
        "[    3.0",
        "[    4.0",
        "[    5.0",
    ]


def test_memcheck_appends_its_kernel_parameters(tmp_path: Path) -> None:
    args = vm.parse_args(["--kernel", "6.1", "--memcheck", "--append", "quiet", "--", "true"])
    assert args.memcheck and args.append == ["quiet"]
    run = _run(tmp_path, append=(*vm.MEMCHECK_PARAMS, "quiet"))
    assert appended(tmp_path, run) == [
        "tsc=reliable",
        "slub_debug=FZP",
        "kfence.sample_interval=1",
        "quiet",
    ]


def appended(tmp_path: Path, run: vm.Run) -> list[str]:
    """The kernel parameters lxbsm-vm gives vng for @run."""
    cmd = vm.vng_command(run, "vng", tmp_path / "vmlinuz", tmp_path / "guest.sh")
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--append"]


def test_every_guest_keeps_the_tsc_clock(tmp_path: Path) -> None:
    """Without tsc=reliable 5.10 and 6.1 guests fall back to the HPET under TCG."""
    assert appended(tmp_path, _run(tmp_path)) == ["tsc=reliable"]


def test_kernels_before_6_0_get_a_small_9p_msize(tmp_path: Path) -> None:
    assert vm.default_msize("5.10.0-46-amd64") == vm.OLD_9P_MSIZE
    assert vm.default_msize("6.1.0-57-amd64") == vm.VIRTME_MSIZE
    assert vm.default_msize("7.3.4+deb13-amd64") == vm.VIRTME_MSIZE
    run = vm.Run("5.10.0-46-amd64", ["true"], None, [], [], "2G", 2, 60, tmp_path, msize=32768)
    assert run.root_9p == "msize=32768,cache=loose"


def test_virtme_root_shim_mounts_the_root_with_the_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import virtme.mkinitramfs as mk
    from virtme.commands import run

    from lxbsm_tools import virtme_root

    seen: list[str] = []

    def fake_main() -> int:
        seen.append(mk._MOUNT_ROOT_HOST)
        return 7

    monkeypatch.setattr(run, "main", fake_main)
    monkeypatch.setattr(mk, "_MOUNT_ROOT_HOST", mk._MOUNT_ROOT_HOST)
    monkeypatch.setenv("LXBSM_ROOT_9P", "msize=32768,cache=loose")
    assert virtme_root.main() == 7
    assert "msize=32768,cache=loose" in seen[0] and virtme_root.VIRTME_MOUNT not in seen[0]

    # Options that are not the two it knows are refused ...
    monkeypatch.setenv("LXBSM_ROOT_9P", "msize=32768,cache=loose,posixacl")
    assert virtme_root.main() == 2
    assert "not msize=N" in capsys.readouterr().err
    # ... and so is a virtme-ng that mounts its root some other way.
    monkeypatch.setenv("LXBSM_ROOT_9P", "msize=32768,cache=none")
    monkeypatch.setattr(mk, "_MOUNT_ROOT_HOST", "mount -t 9p -o msize=1048576 /dev/root")
    assert virtme_root.main() == 2
    assert len(seen) == 1
    assert "pyproject.toml" in capsys.readouterr().err
