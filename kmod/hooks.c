// SPDX-License-Identifier: GPL-2.0
/*
 * The one table of hooks: every kernel function and tracepoint lxbsm
 * attaches to, registered in order at load and unregistered in reverse at
 * unload.  A required hook that cannot be attached fails the load; an
 * optional one (an ABI this kernel lacks) is reported as missing.
 *
 * Order matters once: security_bprm_check and security_file_open come after
 * the exec hooks, so they are detached first and never see an exec whose
 * return handler is gone.
 * (Kretprobes are detached in one batch, in reverse table order, after the
 * tracepoints and the kprobes, which may look at a kretprobe's calls.)
 *
 * A kretprobe holds one instance of a fixed pool for the whole call: a call
 * that may block for as long as a user likes (accept) is recorded from a
 * kprobe at a point after the wait instead.  Whatever a hook still misses
 * (no instance left, or a probe hit inside another probe) is counted by the
 * kernel in nmissed; a timer turns every new miss into a lost record
 * (LXBSM_LOST_NO_INSTANCE), so the trail shows the gap.  A connect
 * (blocking for as long as a user likes too) is recorded late, by its task,
 * when its kretprobe missed it (ev_net.c): such a miss is recovered, not lost.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/timer.h>

#include "compat.h"
#include "hooks.h"

/* kretprobe instances: more than CPUs, as calls sleep (exec, open, accept) */
#define ACTIVE_SLEEPY	1024
#define ACTIVE_QUICK	256

#define KRETX(sym, req, a, e, r, size, active, track)			\
	{ .symbol = sym, .kind = LXBSM_KRETPROBE, .required = req, .arg = a, \
	  .entry = e, .ret = r, .data_size = size, .maxactive = active,	\
	  .inflight = track }
#define KRET(sym, req, a, e, r, size, active)				\
	KRETX(sym, req, a, e, r, size, active, false)

#define EXEC(sym, req, a)						\
	KRET(sym, req, a, lxbsm_exec_entry, lxbsm_exec_ret, lxbsm_exec_data_size, ACTIVE_SLEEPY)
#define SETID(sym, a)							\
	KRET(sym, true, a, lxbsm_setid_entry, lxbsm_setid_ret, lxbsm_setid_data_size, ACTIVE_QUICK)
#define SETGROUPS(sym, req)						\
	KRET(sym, req, 0, lxbsm_setgroups_entry, lxbsm_setgroups_ret, lxbsm_setid_data_size, \
	     ACTIVE_QUICK)
#define SOCK(sym, req, a)						\
	KRET(sym, req, a, lxbsm_sock_entry, lxbsm_sock_ret, lxbsm_sock_data_size, ACTIVE_SLEEPY)
/* a socket call whose calls a kprobe looks up (security_socket_bind, _connect) */
#define SOCK_LOOKED_UP(sym, req, a)					\
	KRETX(sym, req, a, lxbsm_sock_entry, lxbsm_sock_ret, lxbsm_sock_data_size, \
	      ACTIVE_SLEEPY, true)
#define KPROBE(sym, req, handler)					\
	{ .symbol = sym, .kind = LXBSM_KPROBE, .required = req, .pre = handler }

static struct lxbsm_hook hooks[] = {
	{ .symbol = "sched_process_fork", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = lxbsm_fork_probe },
	{ .symbol = "sched_process_exit", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = lxbsm_exit_probe },
	/* the program an exec started: login programs, su and sudo */
	{ .symbol = "sched_process_exec", .kind = LXBSM_TRACEPOINT, .required = true,
	  .probe = lxbsm_exec_probe },
	EXEC("__x64_sys_execve", true, LXBSM_EXEC_EXECVE),
	EXEC("__x64_sys_execveat", true, LXBSM_EXEC_EXECVEAT),
	EXEC("__ia32_compat_sys_execve", false, LXBSM_EXEC_EXECVE),
	EXEC("__ia32_compat_sys_execveat", false, LXBSM_EXEC_EXECVEAT),
	EXEC("__x64_compat_sys_execve", false, LXBSM_EXEC_EXECVE),	/* x32 */
	EXEC("__x64_compat_sys_execveat", false, LXBSM_EXEC_EXECVEAT),
	/* the programs the kernel starts: usermode helpers (modprobe, core pipes) */
	EXEC("kernel_execve", true, LXBSM_EXEC_KERNEL),
	/* exec control decides here, and the exec record learns the file */
	KRET("security_bprm_check", true, 0, lxbsm_bprm_check_entry, lxbsm_bprm_check_ret,
	     lxbsm_bprm_check_data_size, ACTIVE_SLEEPY),
	/* ... and here for the other files opened for execution (an ELF
	 * interpreter, uselib); every other open leaves at once
	 */
	KRET("security_file_open", true, 0, lxbsm_exec_open_entry, lxbsm_exec_open_ret,
	     lxbsm_exec_open_data_size, ACTIVE_QUICK),
	KRET("security_mmap_file", true, 0, lxbsm_mmap_entry, lxbsm_mmap_ret,
	     lxbsm_mmap_data_size, ACTIVE_SLEEPY),
	/* fd_install looks up the open in flight */
	KRETX("do_sys_openat2", true, 0, lxbsm_open_entry, lxbsm_open_ret,
	      lxbsm_open_data_size, ACTIVE_SLEEPY, true),
	KRET("do_filp_open", false, 0, lxbsm_filp_open_entry, lxbsm_filp_open_ret,
	     lxbsm_filp_open_data_size, ACTIVE_SLEEPY),
	/* ... its name from 7.x on: each kernel has one of the two */
	KRET("do_file_open", false, 0, lxbsm_filp_open_entry, lxbsm_filp_open_ret,
	     lxbsm_filp_open_data_size, ACTIVE_SLEEPY),
	KRET("__x64_sys_close", true, 0, lxbsm_close_entry, lxbsm_close_ret,
	     lxbsm_close_data_size, ACTIVE_QUICK),
	KRET("__ia32_sys_close", false, 0, lxbsm_close_entry, lxbsm_close_ret,
	     lxbsm_close_data_size, ACTIVE_QUICK),
	KRET("kernel_clone", true, 0, lxbsm_clone_entry, lxbsm_clone_ret,
	     lxbsm_setid_data_size, ACTIVE_SLEEPY),
	SETID("__sys_setuid", 0),
	SETID("__sys_setgid", 1),
	SETID("__sys_setreuid", 2),
	SETID("__sys_setregid", 3),
	SETID("__sys_setresuid", 4),
	SETID("__sys_setresgid", 5),
	SETID("__sys_setfsuid", 6),
	SETID("__sys_setfsgid", 7),
	SETGROUPS("__x64_sys_setgroups", true),
	SETGROUPS("__ia32_sys_setgroups", false),
	SETGROUPS("__ia32_sys_setgroups16", false),
	/*
	 * Sockets (ev_net.c): a successful accept (syscall or io_uring) is
	 * recorded where its file is installed, after the wait, so blocked
	 * accepts hold no instance; __sys_accept4 records the failures.
	 * fd_install also gives an open its own file (ev_file.c).  connect
	 * and bind take the kernel's copy of the address.
	 */
	KPROBE("fd_install", true, lxbsm_fd_install_pre),
	SOCK("__sys_accept4", true, 0),
	SOCK_LOOKED_UP("__sys_connect_file", true, 1),
	/* ... and a connect it missed (no instance left) from here, before the wait */
	KPROBE("security_socket_connect", true, lxbsm_connect_pre),
	SOCK_LOOKED_UP("__sys_bind", true, 2),
	SOCK_LOOKED_UP("__sys_bind_socket", false, 3),	/* io_uring bind, 6.11 on */
	KPROBE("security_socket_bind", true, lxbsm_bind_addr_pre),
	KPROBE("io_fixed_fd_install", false, lxbsm_fixed_install_pre),
	KRET("audit_set_loginuid", false, 0, lxbsm_loginuid_entry, lxbsm_loginuid_ret,
	     lxbsm_setid_data_size, ACTIVE_QUICK),
};

static_assert(ARRAY_SIZE(hooks) <= LXBSM_HOOKS_MAX);

#ifdef LXBSM_HAVE_KRETPROBE_RETHOOK
/*
 * Only current adds to and takes from its own list of hooked returns, newest
 * first; an NMI's entries are gone again before we resume, so current may
 * walk it.  Our kprobes are detached before the kretprobes (lxbsm_hooks_exit),
 * so krp.rh is valid whenever a kprobe handler calls this.
 */
void *lxbsm_inflight(kretprobe_handler_t entry)
{
	struct llist_node *n;
	int i;

	for (n = current->rethooks.first; n; n = n->next) {
		struct rethook_node *node = container_of(n, struct rethook_node, llist);

		for (i = 0; i < ARRAY_SIZE(hooks); i++) {
			struct lxbsm_hook *h = &hooks[i];

			if (h->kind == LXBSM_KRETPROBE && h->entry == entry &&
			    READ_ONCE(h->state) == LXBSM_HOOK_ON && h->krp.rh == node->rethook)
				return container_of(node, struct kretprobe_instance, node)->data;
		}
	}
	return NULL;
}
NOKPROBE_SYMBOL(lxbsm_inflight);
#endif /* LXBSM_HAVE_KRETPROBE_RETHOOK; else compat_inflight.c */

/* Calls a hook let through unseen: no instance left, or a probe in a probe. */
static unsigned long hook_missed(const struct lxbsm_hook *h)
{
	if (h->state != LXBSM_HOOK_ON)
		return 0;
	switch (h->kind) {
	case LXBSM_KRETPROBE:
		return (unsigned int)READ_ONCE(h->krp.nmissed) + READ_ONCE(h->krp.kp.nmissed) +
			atomic64_read(&h->dropped);
	case LXBSM_KPROBE:
		return READ_ONCE(h->krp.kp.nmissed);
	case LXBSM_TRACEPOINT:
		break;
	}
	return 0;
}

#define MISSED_POLL	(HZ / 10)

static struct timer_list missed_timer;
static bool missed_timer_on;

static u64 missed_last;		/* every hook's misses at the previous poll */
static u64 missed_lost;		/* misses reported as lost records */

/*
 * Every miss not recovered becomes a lost record (one writer: the timer,
 * then unload).  A miss is counted at the call's entry, its recovery a
 * moment later (a kprobe further into the call): only misses at least one
 * poll old are reported, then, so as not to announce one being recovered;
 * at unload (@final), with the hooks gone, all of them.
 */
static void report_missed(bool final)
{
	u64 missed = 0, recovered = 0, upto;
	int i;

	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		h->missed_seen = hook_missed(h);
		missed += h->missed_seen;
		recovered += atomic64_read(&h->recovered);
	}
	upto = final ? missed : missed_last;
	missed_last = missed;
	if (upto > recovered + missed_lost) {
		lxbsm_lost_n(LXBSM_LOST_NO_INSTANCE, upto - recovered - missed_lost);
		missed_lost = upto - recovered;
	}
}

static void missed_tick(struct timer_list *t)
{
	report_missed(false);
	mod_timer(t, jiffies + MISSED_POLL);
}

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	struct lxbsm_hook *h = priv;

	if (!h->tp && !strcmp(tp->name, h->symbol))
		h->tp = tp;
}

static int attach(struct lxbsm_hook *h)
{
	switch (h->kind) {
	case LXBSM_KRETPROBE:
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.symbol_name = h->symbol;
		h->krp.entry_handler = h->entry;
		h->krp.handler = h->ret;
		h->krp.data_size = h->data_size();
		h->krp.maxactive = max_t(int, h->maxactive, 2 * num_possible_cpus());
		if (h->inflight)
			lxbsm_inflight_track(h);
		return register_kretprobe(&h->krp);
	case LXBSM_KPROBE:
		memset(&h->krp, 0, sizeof(h->krp));
		h->krp.kp.symbol_name = h->symbol;
		h->krp.kp.pre_handler = h->pre;
		return register_kprobe(&h->krp.kp);
	case LXBSM_TRACEPOINT:
		h->tp = NULL;
		for_each_kernel_tracepoint(find_tracepoint, h);
		if (!h->tp)
			return -ENOENT;
		return tracepoint_probe_register(h->tp, h->probe, h);
	}
	return -EINVAL;
}

/*
 * Detach everything attached, in reverse order, in batches: the kernel
 * waits for running handlers once per batch instead of once per probe.
 * Tracepoints first, then the kprobes, then the kretprobes.
 */
void lxbsm_hooks_exit(void)
{
	static struct kretprobe *krps[ARRAY_SIZE(hooks)];
	static struct kprobe *kps[ARRAY_SIZE(hooks)];
	int i, nkrp = 0, nkp = 0;
	bool tracepoints = false;

	if (missed_timer_on) {
		lxbsm_timer_delete_sync(&missed_timer);
		missed_timer_on = false;
	}

	for (i = ARRAY_SIZE(hooks) - 1; i >= 0; i--) {
		struct lxbsm_hook *h = &hooks[i];

		if (h->state != LXBSM_HOOK_ON)
			continue;
		switch (h->kind) {
		case LXBSM_TRACEPOINT:
			tracepoint_probe_unregister(h->tp, h->probe, h);
			tracepoints = true;
			break;
		case LXBSM_KRETPROBE:
			krps[nkrp++] = &h->krp;
			break;
		case LXBSM_KPROBE:
			kps[nkp++] = &h->krp.kp;
			break;
		}
	}
	/* No tracepoint probe may still be running once this returns. */
	if (tracepoints)
		tracepoint_synchronize_unregister();
	if (nkp)
		unregister_kprobes(kps, nkp);
	if (nkrp)
		unregister_kretprobes(krps, nkrp);
	report_missed(true);
	lxbsm_inflight_reset();
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		if (h->state != LXBSM_HOOK_ON)
			continue;
		if (h->missed_seen)
			pr_info("%s: %lu calls missed\n", h->symbol, h->missed_seen);
		h->state = LXBSM_HOOK_OFF;
	}
	/* No return handler runs any more: free what they would have freed. */
	lxbsm_exec_exit();
}

int lxbsm_hooks_init(void)
{
	int i, ret, on = 0, missing = 0;

	missed_last = 0;
	missed_lost = 0;
	lxbsm_inflight_reset();
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		atomic64_set(&h->hits, 0);
		atomic64_set(&h->recovered, 0);
		atomic64_set(&h->dropped, 0);
		h->missed_seen = 0;
		ret = attach(h);
		if (!ret) {
			h->state = LXBSM_HOOK_ON;
			on++;
			continue;
		}
		if (h->required) {
			pr_err("cannot attach to %s: %d\n", h->symbol, ret);
			h->state = LXBSM_HOOK_OFF;
			lxbsm_hooks_exit();
			return ret;
		}
		h->state = LXBSM_HOOK_MISSING;
		missing++;
		pr_info("optional hook %s not available here (%d)\n", h->symbol, ret);
	}
	pr_info("%d hooks attached, %d optional ones missing\n", on, missing);
	timer_setup(&missed_timer, missed_tick, TIMER_DEFERRABLE);
	mod_timer(&missed_timer, jiffies + MISSED_POLL);
	missed_timer_on = true;
	return 0;
}

u32 lxbsm_hooks_count(void)
{
	return ARRAY_SIZE(hooks);
}

int lxbsm_hook_info(struct lxbsm_hook_info *info)
{
	const struct lxbsm_hook *h;

	if (info->index >= ARRAY_SIZE(hooks))
		return -ENOENT;
	h = &hooks[info->index];
	info->state = h->state;
	info->missed = hook_missed(h);
	info->hits = atomic64_read(&h->hits);
	strscpy(info->name, h->symbol, sizeof(info->name));
	return 0;
}

void lxbsm_hooks_missed(struct lxbsm_status *st)
{
	int i;

	st->nr_hooks = ARRAY_SIZE(hooks);
	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		st->missed[i] = hook_missed(&hooks[i]);
}
