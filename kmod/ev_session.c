// SPDX-License-Identifier: GPL-2.0
/*
 * Logins, logouts, su and sudo, inferred from what the login programs do
 * (the LxBSM paper's sections 4.2-4.3) without changing them.  The rules
 * live with the process table (proc.c); this file tells which program an
 * exec started (sched_process_exec), reads the controlling tty, and writes
 * the records as OpenBSM's audit_submit(3) does: [subject], text, return.
 *
 *   AUE_openssh	a login through sshd, or a failed one (its connection
 *			process exited without a session)
 *   AUE_login		the same for login(1) on a terminal
 *   AUE_logout		the exit of a session's connection (or login) process
 *   AUE_su, AUE_sudo	an identity change, who made it and the identity
 *			assumed; failure: the program exited without any
 *			process of its tree taking a new identity
 */
#include <linux/binfmts.h>
#include <linux/dcache.h>
#include <linux/fs_struct.h>
#include <linux/kdev_t.h>
#include <linux/mount.h>
#include <linux/sched/signal.h>
#include <linux/tty.h>

#include "hooks.h"

/* Programs by their canonical path (d_path of the file that runs). */
static const struct {
	const char *path;
	const char *base;		/* last component: the cheap first test */
	enum lxbsm_prog prog;
} login_progs[] = {
	{ "/usr/sbin/sshd",			"sshd",		LXBSM_PROG_SSHD },
	{ "/usr/lib/openssh/sshd-session",	"sshd-session",	LXBSM_PROG_SSHD },
	{ "/usr/lib/openssh/sshd-auth",		"sshd-auth",	LXBSM_PROG_SSHD },
	{ "/usr/bin/login",			"login",	LXBSM_PROG_LOGIN },
	{ "/bin/login",				"login",	LXBSM_PROG_LOGIN },
	{ "/usr/bin/su",			"su",		LXBSM_PROG_SU },
	{ "/bin/su",				"su",		LXBSM_PROG_SU },
	{ "/usr/bin/sudo",			"sudo",		LXBSM_PROG_SUDO },
};

#define PROG_PATH_MAX	48

static enum lxbsm_prog prog_of(const struct file *file)
{
	const struct dentry *d = file->f_path.dentry;
	char buf[PROG_PATH_MAX];
	bool maybe = false;
	const char *path;
	int i;

	rcu_read_lock();
	for (i = 0; i < ARRAY_SIZE(login_progs) && !maybe; i++)
		maybe = !strcmp(READ_ONCE(d->d_name.name), login_progs[i].base);
	rcu_read_unlock();
	if (!maybe)
		return LXBSM_PROG_NONE;
	path = lxbsm_d_path(&file->f_path, buf, sizeof(buf));
	if (IS_ERR(path))
		return LXBSM_PROG_NONE;
	for (i = 0; i < ARRAY_SIZE(login_progs); i++)
		if (!strcmp(path, login_progs[i].path))
			return login_progs[i].prog;
	return LXBSM_PROG_NONE;
}

/* Tries of siglock before the tty counts as unknown. */
#define TTY_TRIES	8

/*
 * signal->tty is set and cleared under siglock, and the reference it holds
 * keeps the tty alive only while siglock is held: nothing RCU-frees a tty,
 * so a lock-free read of its device number could read freed memory.  But
 * siglock is a spinlock_t (a sleeping lock on PREEMPT_RT) and a handler
 * must not wait for one, so it is only tried: a trylock never blocks
 * (rt_spin_trylock() from task context does not sleep) and a few tries
 * cannot spin for long.  They fail only while another CPU holds this
 * process's siglock (delivering it a signal); the terminal is then unknown.
 */
bool lxbsm_tty_tid(struct lxbsm_tid *tid)
{
	struct sighand_struct *sighand = current->sighand;
	struct tty_struct *tty;
	unsigned long flags;
	dev_t dev = 0;
	int i;

	memset(tid, 0, sizeof(*tid));
	tid->type = 4;
	for (i = 0; i < TTY_TRIES; i++) {
		if (spin_trylock_irqsave(&sighand->siglock, flags)) {
			tty = current->signal->tty;
			if (tty)
				dev = tty_devnum(tty);
			spin_unlock_irqrestore(&sighand->siglock, flags);
			tid->port = new_encode_dev(dev);
			return true;
		}
		cpu_relax();
	}
	return false;
}

/* sched_process_exec(p, old_pid, bprm): the new image is in place. */
void lxbsm_exec_probe(void *data, struct task_struct *p, pid_t old_pid,
		      struct linux_binprm *bprm)
{
	struct lxbsm_tid tty, peer;
	struct lxbsm_session_ev sev;
	enum lxbsm_prog prog;
	bool net = false;

	if (p->flags & PF_KTHREAD)
		return;
	prog = prog_of(bprm->file);
	memset(&tty, 0, sizeof(tty));
	if (prog == LXBSM_PROG_LOGIN)
		lxbsm_tty_tid(&tty);
	else if (prog == LXBSM_PROG_SSHD)
		net = lxbsm_sock_peer_tid(0, &peer);	/* inetd style */
	lxbsm_proc_exec(p, prog, &tty, net ? &peer : NULL, &sev);
	if (sev.ev != LXBSM_EV_NR) {
		lxbsm_hook_hit(data);
		lxbsm_session_record(&sev);
	}
}
NOKPROBE_SYMBOL(lxbsm_exec_probe);

/*
 * Is current chrooted (its root not the root of a mount)?  Read without
 * fs->lock (see lxbsm_fs_path()); if a writer kept it from being read, say
 * yes: that only keeps a setuid from counting as a login.
 */
bool lxbsm_chrooted(void)
{
	struct fs_struct *fs = current->fs;
	struct path root;
	bool ret = true;

	if (!fs)
		return true;
	rcu_read_lock();
	if (lxbsm_fs_path(fs, true, &root))
		ret = root.dentry != root.mnt->mnt_root;
	rcu_read_unlock();
	return ret;
}

void lxbsm_session_record(const struct lxbsm_session_ev *sev)
{
	struct lxbsm_rec *r;
	char text[64];
	u32 uid;

	if (!lxbsm_selected_for(sev->ev, &sev->proc, sev->failed))
		return;
	r = lxbsm_rec_begin(sev->ev);
	if (!r)
		return;
	uid = lxbsm_uid(current_uid());
	switch (sev->ev) {
	case LXBSM_EV_LOGOUT:
		snprintf(text, sizeof(text), "logout: audit id %u", sev->proc.auid);
		break;
	case LXBSM_EV_SU:
	case LXBSM_EV_SUDO:
		if (sev->failed)
			snprintf(text, sizeof(text), "%s: uid %u: no identity assumed",
				 sev->ev == LXBSM_EV_SU ? "su" : "sudo", sev->from_uid);
		else
			snprintf(text, sizeof(text), "%s: uid %u to uid %u (euid %u)",
				 sev->ev == LXBSM_EV_SU ? "su" : "sudo", sev->from_uid, uid,
				 lxbsm_uid(current_euid()));
		break;
	default:
		if (sev->failed)
			snprintf(text, sizeof(text), "failed login");
		else
			snprintf(text, sizeof(text), "successful login: uid %u", sev->proc.auid);
		break;
	}
	lxbsm_tok_text(r, text);
	lxbsm_rec_finish(r, &sev->proc, sev->failed ? -EPERM : 0);
}
