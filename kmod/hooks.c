// SPDX-License-Identifier: GPL-2.0
/*
 * The one table of hooks: every kernel function and tracepoint lxbsm
 * attaches to, registered in order at load and unregistered in reverse at
 * unload.  A required hook that cannot be attached fails the load; an
 * optional one (an ABI this kernel lacks) is reported as missing.
 *
 * Order matters once: security_bprm_check and open_exec come after the exec
 * hooks, so they are detached first and never see an exec whose return
 * handler is gone.
 * (Kretprobes are detached in one batch, in reverse table order.)
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/kernel.h>
#include <linux/string.h>

#include "hooks.h"

/* kretprobe instances: more than CPUs, as calls sleep (exec, open, accept) */
#define ACTIVE_SLEEPY	1024
#define ACTIVE_QUICK	256

#define KRET(sym, req, a, e, r, size, active)				\
	{ .symbol = sym, .kind = LXBSM_KRETPROBE, .required = req, .arg = a, \
	  .entry = e, .ret = r, .data_size = size, .maxactive = active }

#define EXEC(sym, req, a)						\
	KRET(sym, req, a, lxbsm_exec_entry, lxbsm_exec_ret, lxbsm_exec_data_size, ACTIVE_SLEEPY)
#define SETID(sym, a)							\
	KRET(sym, true, a, lxbsm_setid_entry, lxbsm_setid_ret, lxbsm_setid_data_size, ACTIVE_QUICK)
#define SETGROUPS(sym, req)						\
	KRET(sym, req, 0, lxbsm_setgroups_entry, lxbsm_setgroups_ret, lxbsm_setid_data_size, \
	     ACTIVE_QUICK)
#define SOCK(sym, a)							\
	KRET(sym, true, a, lxbsm_sock_entry, lxbsm_sock_ret, lxbsm_sock_data_size, ACTIVE_SLEEPY)

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
	/* ... and here for the other files an exec runs (an ELF interpreter) */
	KRET("open_exec", true, 0, lxbsm_open_exec_entry, lxbsm_open_exec_ret,
	     lxbsm_open_exec_data_size, ACTIVE_SLEEPY),
	/* ... and for uselib(2); every other open leaves at once */
	KRET("security_file_open", true, 0, lxbsm_uselib_entry, lxbsm_uselib_ret,
	     lxbsm_uselib_data_size, ACTIVE_QUICK),
	KRET("security_mmap_file", true, 0, lxbsm_mmap_entry, lxbsm_mmap_ret,
	     lxbsm_mmap_data_size, ACTIVE_SLEEPY),
	KRET("do_sys_openat2", true, 0, lxbsm_open_entry, lxbsm_open_ret,
	     lxbsm_open_data_size, ACTIVE_SLEEPY),
	KRET("do_filp_open", false, 0, lxbsm_filp_open_entry, lxbsm_filp_open_ret,
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
	SOCK("__sys_accept4", 0),
	SOCK("__sys_connect", 1),
	SOCK("__sys_bind", 2),
	KRET("audit_set_loginuid", false, 0, lxbsm_loginuid_entry, lxbsm_loginuid_ret,
	     lxbsm_setid_data_size, ACTIVE_QUICK),
};

static_assert(ARRAY_SIZE(hooks) <= LXBSM_HOOKS_MAX);

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
		return register_kretprobe(&h->krp);
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
 * Tracepoints first, then the kretprobes.
 */
void lxbsm_hooks_exit(void)
{
	static struct kretprobe *krps[ARRAY_SIZE(hooks)];
	int i, nkrp = 0;
	bool tracepoints = false;

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
		}
	}
	/* No tracepoint probe may still be running once this returns. */
	if (tracepoints)
		tracepoint_synchronize_unregister();
	if (nkrp)
		unregister_kretprobes(krps, nkrp);
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		if (h->state != LXBSM_HOOK_ON)
			continue;
		if (h->kind == LXBSM_KRETPROBE && h->krp.nmissed)
			pr_info("%s: %d calls missed (no kretprobe instance)\n",
				h->symbol, h->krp.nmissed);
		h->state = LXBSM_HOOK_OFF;
	}
	/* No return handler runs any more: free what they would have freed. */
	lxbsm_exec_exit();
}

int lxbsm_hooks_init(void)
{
	int i, ret, on = 0, missing = 0;

	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct lxbsm_hook *h = &hooks[i];

		atomic64_set(&h->hits, 0);
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
	info->missed = h->kind == LXBSM_KRETPROBE && h->state == LXBSM_HOOK_ON ?
		       h->krp.nmissed : 0;
	info->hits = atomic64_read(&h->hits);
	strscpy(info->name, h->symbol, sizeof(info->name));
	return 0;
}

void lxbsm_hooks_missed(struct lxbsm_status *st)
{
	int i;

	st->nr_hooks = ARRAY_SIZE(hooks);
	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		st->missed[i] = hooks[i].kind == LXBSM_KRETPROBE &&
				hooks[i].state == LXBSM_HOOK_ON ? hooks[i].krp.nmissed : 0;
}
