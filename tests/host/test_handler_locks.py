"""No sleeping lock in kmod/ without a stated reason (issue 13, defect 11).

Handlers (kprobes, kretprobes, tracepoints) run with preemption disabled.
On PREEMPT_RT, which Debian ships, spinlock_t, rwlock_t and mutexes sleep,
and read_seqcount_begin() on a seqcount_spinlock_t takes its spinlock while
a writer runs: none of them may be taken there.  A guest on Debian's non-RT
kernels cannot show the splat, so this check reads the source instead: every
use of such a lock in kmod/*.c (comments stripped) must be listed below with
the reason it is safe, and every listed line must still exist.

Sending a signal takes siglock, so send_sig() and its kin count as such a
lock.  The allocator takes sleeping locks on PREEMPT_RT too, even for
GFP_ATOMIC: handlers use the pools of kmod/pool.h, and no GFP_ATOMIC or
GFP_NOWAIT allocation may appear in kmod/ at all.

What it cannot see, and docs/kernel.md ("Context rules") says: locks taken
inside the kernel functions the handlers call (d_path's retry pass takes
rename_lock and mount_lock), and a GFP_KERNEL allocation or a kfree() called
from a handler (the guest runs on the RT kernels see those).
"""

from __future__ import annotations

import re
from pathlib import Path

KMOD = Path(__file__).resolve().parents[2] / "kmod"

# Sleeping on PREEMPT_RT (raw_spin_* never matches: the name must start here).
SLEEPING = re.compile(
    r"(?<![\w>.])(spin_lock|spin_lock_irq|spin_lock_irqsave|spin_lock_bh|spin_trylock"
    r"|spin_trylock_irqsave|read_lock|write_lock|read_seqlock_excl|mutex_lock"
    r"|mutex_lock_interruptible|mutex_lock_killable|down_read|down_write"
    r"|read_seqcount_begin|read_seqbegin|lock_task_sighand"
    r"|send_sig|send_sig_info|force_sig|kill_pid|group_send_sig_info)\s*\("
    r"|siglock|fs->lock"
)

# The allocator in atomic context: never, on any kernel (one code path).
ATOMIC_ALLOC = re.compile(r"\bGFP_ATOMIC\b|\bGFP_NOWAIT\b|\bkmem_cache_alloc\s*\(")

PROCESS_CONTEXT = "ioctl or module init/exit: process context, never a handler"

# (file, code line as written, stripped) -> why it is allowed.
ALLOWED: dict[tuple[str, str], str] = {
    ("preselect.c", "mutex_lock(&cfg_mutex);"): PROCESS_CONTEXT,
    ("xctl.c", "mutex_lock(&xc_mutex);"): PROCESS_CONTEXT,
    ("xctl.c", "mutex_lock(&consumer_mutex);"): "open/release of the device: process context",
    ("protect.c", "mutex_lock(&pset_lock);"): PROCESS_CONTEXT,
    ("protect.c", "mutex_lock(&lost_lock);"): "a task's work (task_work, on its way back to user"
    " space), where the capture reads files: process context; handlers never keep losses",
    ("hooks.c", "mutex_lock(&cost_lock);"): "the cost parameter's sysfs write, load, unload and"
    " LXBSM_IOC_HOOK_COST: process context; handlers only test the static key",
    ("hooks.c", "mutex_lock(&arm_lock);"): "arming at load, unload and after"
    " LXBSM_IOC_SET_CONFIG (enable_kprobe() sleeps too): process context; handlers never arm",
    (
        "ev_session.c",
        "if (spin_trylock_irqsave(&sighand->siglock, flags)) {",
    ): "a trylock never sleeps (rt_spin_trylock from task context) and is tried a"
    " bounded number of times; the tty is unknown if it stays busy",
    (
        "ev_session.c",
        "spin_unlock_irqrestore(&sighand->siglock, flags);",
    ): "the unlock of the trylock above",
    (
        "xctl.c",
        "send_sig(SIGKILL, current, 1);",
    ): "task_work (hash_work, kill_work), or lxbsm_xc_kill_current()'s last resort when no job"
    " can be queued (the hash job pool empty, the module going): a refused program must not run",
}


def strip_comments(text: str) -> str:
    """C source with comments blanked, line numbers kept."""

    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


def sleeping_lock_lines() -> list[tuple[str, int, str]]:
    found = []
    for src in sorted(KMOD.glob("*.c")):
        code = strip_comments(src.read_text())
        for n, line in enumerate(code.splitlines(), 1):
            if SLEEPING.search(line):
                found.append((src.name, n, line.strip()))
    return found


def test_every_sleeping_lock_in_kmod_has_a_reason() -> None:
    bad = [
        f"kmod/{f}:{n}: {line}" for f, n, line in sleeping_lock_lines() if (f, line) not in ALLOWED
    ]
    assert bad == [], "sleeping lock (on PREEMPT_RT) without a reason:\n" + "\n".join(bad)


def test_no_atomic_allocation_in_kmod() -> None:
    found = []
    for src in sorted(KMOD.glob("*.c")):
        code = strip_comments(src.read_text())
        for n, line in enumerate(code.splitlines(), 1):
            if ATOMIC_ALLOC.search(line):
                found.append(f"kmod/{src.name}:{n}: {line.strip()}")
    assert found == [], "allocation in atomic context (use kmod/pool.h):\n" + "\n".join(found)


def test_every_allowed_line_still_exists() -> None:
    seen = {(f, line) for f, _, line in sleeping_lock_lines()}
    stale = [k for k in ALLOWED if k not in seen]
    assert stale == [], f"allowed lines no longer in kmod/: {stale}"


def test_the_check_sees_what_it_must() -> None:
    """The pattern catches each kind of lock, and not the raw ones."""
    for line in (
        "spin_lock(&fs->lock);",
        "spin_lock_irqsave(&current->sighand->siglock, flags);",
        "mutex_lock(&m);",
        "seq = read_seqcount_begin(&fs->seq);",
        "read_lock(&tasklist_lock);",
        "send_sig(SIGKILL, current, 1);",
    ):
        assert SLEEPING.search(line), line
    for line in (
        "p = kmalloc(n, GFP_ATOMIC | __GFP_NOWARN);",
        "p = kmem_cache_alloc(cache, GFP_KERNEL);",
        "p = kzalloc(n, GFP_NOWAIT);",
    ):
        assert ATOMIC_ALLOC.search(line), line
    assert not ATOMIC_ALLOC.search("p = kmalloc(n, GFP_KERNEL);")
    for line in (
        "raw_spin_lock_irqsave(&p->lock, flags);",
        "raw_spin_lock(lock_of(b));",
        "seq = raw_seqcount_begin(sc);",
        "x->read_lock(y);",
    ):
        assert not SLEEPING.search(line), line
    stripped = strip_comments("a /* siglock\n */ b // fs->lock\nc\n")
    assert stripped.split() == ["a", "b", "c"] and stripped.count("\n") == 3
