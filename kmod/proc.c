// SPDX-License-Identifier: GPL-2.0
/*
 * The per-process audit table (the LxBSM paper's "BSM hash queue").
 *
 * One entry per process (thread group), keyed by its global tgid, holding
 * what BSM keeps per process: audit id, audit session, terminal id, the
 * cached pre-selection mask, flags and the setuid count.  Entries are made
 * at fork from the parent's (sched_process_fork), removed when the last
 * thread exits (sched_process_exit, so a pid is never reused while its
 * entry lives), and made on first sight for processes that existed before
 * the module was loaded, seeded from the kernel's own loginuid and session.
 *
 * Lookups are RCU; each entry has a raw spinlock for its fields; each
 * bucket group has a raw spinlock for insert and delete.  Entries come
 * from a pool (pool.h: a handler may not call the allocator on PREEMPT_RT)
 * and go back to it after a grace period; an empty pool is counted, and the
 * process is then described from its task until an entry can be made (its
 * next event, once the pool is refilled).  No two entry locks are ever held
 * at once.
 *
 * The table also carries the session rules (the paper's login inference),
 * which docs/kernel.md "Sessions" explains:
 * - a network login daemon (sshd) with no audit id that accepts a
 *   connection keeps the peer; the child it forks next takes it as its
 *   terminal id and becomes the connection's "candidate" process (started
 *   by inetd or socket activation instead, sshd finds its peer on fd 0);
 * - a local login program (login) with no audit id is a candidate itself,
 *   its terminal the controlling tty;
 * - only root of the init user namespace makes a login program a
 *   candidate: a copy run by a user (in a user namespace, a chroot, with
 *   LD_PRELOAD) is an ordinary program;
 * - a session starts once per candidate: when pam_loginuid, running as
 *   root, sets the audit id, or, without PAM, at the first call by root that
 *   sets the real uid in the login program's process tree outside a chroot
 *   (sshd's privilege separation child is chrooted); the candidate and the
 *   process take the new audit id, session and terminal, and later setuid
 *   calls only count;
 * - any other write to loginuid is an AUE_SETAUID: taken if the writer may
 *   set audit ids (root or CAP_AUDIT_CONTROL) and the process had none,
 *   otherwise not taken;
 * - the candidate's exit ends the session (logout), or, if none started,
 *   is a failed login;
 * - su and sudo are identity changes, not sessions: the audit id stays; the
 *   change is made when a process in their tree whose real gid was set (by
 *   it or, before the fork, its parent) and that then set its real uid runs
 *   a program: su's child calls setgid and setuid, sudo setgid, then its
 *   child setresuid; their exit without one is a failure.  A PAM helper run
 *   before that, even one that calls setuid(0) as pam_unix's does, changes
 *   nothing.
 */
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/hash.h>
#include <linux/moduleparam.h>
#include <linux/rculist.h>
#include <linux/sched/signal.h>
#include <linux/user_namespace.h>

#include "lxbsm.h"
#include "pool.h"

#define PROC_HASH_BITS	12
#define PROC_LOCK_BITS	6

struct lxbsm_proc {
	struct hlist_node node;
	struct rcu_head rcu;
	raw_spinlock_t lock;		/* the fields below */
	pid_t tgid;
	u32 auid;
	u32 asid;
	struct lxbsm_tid tid;
	struct lxbsm_mask mask;
	u64 mask_gen;
	u32 flags;			/* PF_* */
	u32 setuid_count;
	u8 prog;			/* enum lxbsm_prog of the running image */
	u32 from_uid;			/* su/sudo: the real uid that ran it */
	struct lxbsm_tid peer;		/* PF_PEER: the last accepted peer */
};

/* Entry flags.  Only PF_NETTID and PF_GIDSET are inherited at fork. */
#define PF_PEER		0x01	/* a daemon's accepted peer is in ->peer */
#define PF_NETTID	0x02	/* ->tid is an accepted connection's peer */
#define PF_CAND		0x04	/* the process a login attempt runs in */
#define PF_LOGGED	0x08	/* a session started for this candidate */
#define PF_IDCAND	0x10	/* an su or sudo process */
#define PF_IDDONE	0x20	/* ... whose identity change happened */
#define PF_SUDO		0x40	/* ... and it was sudo */
#define PF_LOCAL	0x80	/* a candidate of a local login program */
#define PF_GIDSET	0x100	/* set its real gid in an su or sudo tree */
#define PF_IDSET	0x200	/* ... and then its real uid: a new identity */

#define AUID_UNSET	((u32)-1)
#define ASID_INFERRED	0x40000000	/* sessions lxbsm starts: base of their ids */

static atomic_t inferred_asid = ATOMIC_INIT(0);

/*
 * Root of the init user namespace (real and effective uid 0): what a login
 * program must run as to count as one.  A user namespace's root, a chroot or
 * LD_PRELOAD change neither the real uid nor the namespace.  Lock-free: the
 * caller's own credentials, or a task's under RCU.
 */
static bool cred_is_root(const struct cred *cred)
{
	return cred->user_ns == &init_user_ns && uid_eq(cred->uid, GLOBAL_ROOT_UID) &&
	       uid_eq(cred->euid, GLOBAL_ROOT_UID);
}

bool lxbsm_cred_is_root(const struct cred *cred)
{
	return cred_is_root(cred);
}

/* May set audit ids: root, or CAP_AUDIT_CONTROL, in the init user namespace. */
bool lxbsm_cred_audit_ctl(const struct cred *cred)
{
	return cred->user_ns == &init_user_ns &&
	       (uid_eq(cred->uid, GLOBAL_ROOT_UID) ||
		cap_raised(cred->cap_effective, CAP_AUDIT_CONTROL));
}
/* Live su/sudo processes: while there are none, an exec looks no further. */
static atomic_t idcands = ATOMIC_INIT(0);

static struct hlist_head proc_hash[1 << PROC_HASH_BITS];
static raw_spinlock_t proc_locks[1 << PROC_LOCK_BITS];
/*
 * Entries kept ready (128 bytes each: 512 KiB).  The pool drains only while
 * the table grows, as each exit gives an entry back: a fork storm empties it
 * only if the table grows by 4096 processes before the refill, queued after
 * the first 1024, has run; processes are then seeded on first sight.
 */
#define PROC_POOL	4096
LXBSM_POOL_DEFINE(lxbsm_proc_pool, "process table", sizeof(struct lxbsm_proc), PROC_POOL);
module_param_named(proc_pool, lxbsm_proc_pool.capacity, uint, 0444);
MODULE_PARM_DESC(proc_pool, "Process table entries kept ready for handlers (default 4096; 0 for tests: every process described from its task)");

static atomic64_t proc_entries = ATOMIC64_INIT(0);
atomic64_t lxbsm_proc_alloc_failed = ATOMIC64_INIT(0);

static void proc_free_rcu(struct rcu_head *head)
{
	lxbsm_pool_put(&lxbsm_proc_pool, container_of(head, struct lxbsm_proc, rcu));
}

static inline u32 bucket_of(pid_t tgid)
{
	return hash_32((u32)tgid, PROC_HASH_BITS);
}

static inline raw_spinlock_t *lock_of(u32 bucket)
{
	return &proc_locks[bucket & ((1 << PROC_LOCK_BITS) - 1)];
}

int lxbsm_proc_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(proc_locks); i++)
		raw_spin_lock_init(&proc_locks[i]);
	for (i = 0; i < ARRAY_SIZE(proc_hash); i++)
		INIT_HLIST_HEAD(&proc_hash[i]);
	return 0;
}

/* Only once no hook can run: frees every entry. */
void lxbsm_proc_exit(void)
{
	struct lxbsm_proc *p;
	struct hlist_node *tmp;
	int i;

	for (i = 0; i < ARRAY_SIZE(proc_hash); i++) {
		hlist_for_each_entry_safe(p, tmp, &proc_hash[i], node) {
			hlist_del(&p->node);
			lxbsm_pool_put(&lxbsm_proc_pool, p);
		}
	}
	atomic64_set(&proc_entries, 0);
	atomic_set(&idcands, 0);
	rcu_barrier();		/* entries given back by call_rcu() */
}

u64 lxbsm_proc_count(void)
{
	return atomic64_read(&proc_entries);
}

static struct lxbsm_proc *lookup_rcu(pid_t tgid)
{
	struct lxbsm_proc *p;

	hlist_for_each_entry_rcu(p, &proc_hash[bucket_of(tgid)], node)
		if (p->tgid == tgid)
			return p;
	return NULL;
}

/* What the kernel itself knows of a process we have no entry for. */
static void seed_from_task(struct task_struct *task, struct lxbsm_proc *p)
{
	p->tgid = task_tgid_nr(task);
	p->auid = lxbsm_uid(audit_get_loginuid(task));
	p->asid = audit_get_sessionid(task);
	memset(&p->tid, 0, sizeof(p->tid));
	p->tid.type = 4;
	p->mask_gen = 0;
	p->flags = 0;
	p->setuid_count = 0;
	p->prog = LXBSM_PROG_NONE;
	p->from_uid = 0;
}

/*
 * Insert @new for its tgid, replacing any entry there (a stale one can only
 * come from a missed exit).  Returns the entry now in the table.
 */
static struct lxbsm_proc *insert(struct lxbsm_proc *new, bool replace)
{
	u32 b = bucket_of(new->tgid);
	struct lxbsm_proc *old;
	unsigned long flags;

	raw_spin_lock_init(&new->lock);
	raw_spin_lock_irqsave(lock_of(b), flags);
	old = lookup_rcu(new->tgid);
	if (old && !replace) {
		raw_spin_unlock_irqrestore(lock_of(b), flags);
		lxbsm_pool_put(&lxbsm_proc_pool, new);
		return old;
	}
	if (old) {
		hlist_replace_rcu(&old->node, &new->node);
		call_rcu(&old->rcu, proc_free_rcu);
	} else {
		hlist_add_head_rcu(&new->node, &proc_hash[b]);
		atomic64_inc(&proc_entries);
	}
	raw_spin_unlock_irqrestore(lock_of(b), flags);
	return new;
}

static void copy_snap(struct lxbsm_proc *p, struct lxbsm_proc_snap *snap)
{
	const struct lxbsm_cfg *cfg = rcu_dereference(lxbsm_cfg);
	unsigned long flags;

	raw_spin_lock_irqsave(&p->lock, flags);
	if (p->mask_gen != cfg->gen) {
		p->mask = lxbsm_mask_for(cfg, p->auid);
		p->mask_gen = cfg->gen;
	}
	snap->auid = p->auid;
	snap->asid = p->asid;
	snap->tid = p->tid;
	snap->mask = p->mask;
	raw_spin_unlock_irqrestore(&p->lock, flags);
}

void lxbsm_proc_snapshot(struct task_struct *task, struct lxbsm_proc_snap *snap)
{
	struct lxbsm_proc *p;

	rcu_read_lock();
	p = lookup_rcu(task_tgid_nr(task));
	if (!p) {
		p = lxbsm_pool_get(&lxbsm_proc_pool);
		if (p) {
			seed_from_task(task, p);
			p = insert(p, false);
		} else {
			struct lxbsm_proc tmp;

			atomic64_inc(&lxbsm_proc_alloc_failed);
			seed_from_task(task, &tmp);
			snap->auid = tmp.auid;
			snap->asid = tmp.asid;
			snap->tid = tmp.tid;
			snap->mask = lxbsm_mask_for(rcu_dereference(lxbsm_cfg), tmp.auid);
			rcu_read_unlock();
			return;
		}
	}
	copy_snap(p, snap);
	rcu_read_unlock();
}

/* sched_process_fork: a new process inherits its parent's entry. */
void lxbsm_proc_fork(struct task_struct *parent, struct task_struct *child)
{
	struct lxbsm_proc *p, *pp;
	unsigned long flags;

	if (child->tgid == parent->tgid)	/* a thread, not a process */
		return;
	p = lxbsm_pool_get(&lxbsm_proc_pool);
	if (!p) {
		/* The child will be seeded from its task on first sight. */
		atomic64_inc(&lxbsm_proc_alloc_failed);
		return;
	}
	rcu_read_lock();
	pp = lookup_rcu(task_tgid_nr(parent));
	if (pp) {
		raw_spin_lock_irqsave(&pp->lock, flags);
		p->auid = pp->auid;
		p->asid = pp->asid;
		p->tid = pp->tid;
		p->mask = pp->mask;
		p->mask_gen = pp->mask_gen;
		p->flags = pp->flags & (PF_NETTID | PF_GIDSET);
		p->setuid_count = pp->setuid_count;
		p->prog = pp->prog;
		p->from_uid = 0;
		if (pp->auid == AUID_UNSET && pp->flags & PF_PEER) {
			/* A login daemon's child serves the connection it accepted. */
			p->tid = pp->peer;
			p->flags |= PF_NETTID | PF_CAND;
		}
		raw_spin_unlock_irqrestore(&pp->lock, flags);
	} else {
		seed_from_task(parent, p);
	}
	rcu_read_unlock();
	p->tgid = task_tgid_nr(child);
	insert(p, true);
}

/*
 * sched_process_exit of the last thread: the process is gone.  A candidate
 * or an su/sudo process leaves in @end what its exit means (a logout, a
 * failed login, a failed identity change); @end->ev is LXBSM_EV_NR if
 * nothing.
 */
bool lxbsm_proc_remove(struct task_struct *task, struct lxbsm_session_ev *end)
{
	pid_t tgid = task_tgid_nr(task);
	u32 b = bucket_of(tgid);
	struct lxbsm_proc *p;
	unsigned long flags;

	end->ev = LXBSM_EV_NR;
	rcu_read_lock();
	raw_spin_lock_irqsave(lock_of(b), flags);
	p = lookup_rcu(tgid);
	if (p) {
		hlist_del_rcu(&p->node);
		atomic64_dec(&proc_entries);
	}
	raw_spin_unlock_irqrestore(lock_of(b), flags);
	if (p && p->flags & (PF_CAND | PF_IDCAND)) {
		/* Unlinked: nobody else changes it now. */
		if (p->flags & PF_IDCAND)
			atomic_dec(&idcands);
		if (p->flags & PF_CAND && p->flags & PF_LOGGED) {
			end->ev = LXBSM_EV_LOGOUT;
			end->failed = false;
		} else if (p->flags & PF_CAND) {
			end->ev = p->flags & PF_LOCAL ? LXBSM_EV_LOGIN : LXBSM_EV_OPENSSH;
			end->failed = true;
		} else if (!(p->flags & PF_IDDONE)) {
			end->ev = p->flags & PF_SUDO ? LXBSM_EV_SUDO : LXBSM_EV_SU;
			end->failed = true;
		}
		end->from_uid = p->from_uid;
		copy_snap(p, &end->proc);
	}
	rcu_read_unlock();
	if (p)
		call_rcu(&p->rcu, proc_free_rcu);
	return p;
}

/* The entry of @task, made if needed; under rcu_read_lock(). */
static struct lxbsm_proc *entry_of(struct task_struct *task)
{
	struct lxbsm_proc_snap snap;
	struct lxbsm_proc *p = lookup_rcu(task_tgid_nr(task));

	if (p)
		return p;
	lxbsm_proc_snapshot(task, &snap);	/* makes the entry if it can */
	return lookup_rcu(task_tgid_nr(task));
}

/* Does an accept by @task matter to the session rules (cheap: no entry made)? */
bool lxbsm_proc_wants_peer(struct task_struct *task)
{
	struct lxbsm_proc *p;
	bool want;

	rcu_read_lock();
	p = lookup_rcu(task_tgid_nr(task));
	want = p && READ_ONCE(p->prog) == LXBSM_PROG_SSHD && READ_ONCE(p->auid) == AUID_UNSET;
	rcu_read_unlock();
	return want;
}

/* An accept by a login daemon with no audit id: its child serves that peer. */
void lxbsm_proc_accepted(struct task_struct *task, const struct lxbsm_tid *peer)
{
	struct lxbsm_proc *p;
	unsigned long flags;

	rcu_read_lock();
	p = entry_of(task);
	if (p) {
		raw_spin_lock_irqsave(&p->lock, flags);
		if (p->auid == AUID_UNSET && p->prog == LXBSM_PROG_SSHD) {
			p->peer = *peer;
			p->flags |= PF_PEER;
		}
		raw_spin_unlock_irqrestore(&p->lock, flags);
	}
	rcu_read_unlock();
}

/*
 * The candidate a login in @task belongs to: the task itself or one of its
 * nearest ancestors (sshd's session runs in a child of the connection's
 * process).  Under rcu_read_lock().
 */
static struct lxbsm_proc *candidate_of(struct task_struct *task, u32 want)
{
	struct lxbsm_proc *p;
	int depth;

	for (depth = 0; depth < 4 && task && task->pid; depth++) {
		p = lookup_rcu(task_tgid_nr(task));
		if (p && READ_ONCE(p->flags) & want)
			return p;
		task = rcu_dereference(task->real_parent);
	}
	return NULL;
}

/*
 * Start the session of candidate @c in process @p (they may be the same):
 * both take the audit id, session and the candidate's terminal.  Returns
 * false if the candidate already has one (the login was recorded once).
 */
static bool start_session(struct lxbsm_proc *c, struct lxbsm_proc *p, u32 auid, u32 asid,
			  struct lxbsm_session_ev *out)
{
	struct lxbsm_tid tid;
	unsigned long flags;
	bool local;

	raw_spin_lock_irqsave(&c->lock, flags);
	if (c->flags & PF_LOGGED) {
		raw_spin_unlock_irqrestore(&c->lock, flags);
		return false;
	}
	c->flags |= PF_LOGGED;
	c->auid = auid;
	c->asid = asid;
	c->mask_gen = 0;
	c->setuid_count = 0;
	tid = c->tid;
	local = c->flags & PF_LOCAL;
	raw_spin_unlock_irqrestore(&c->lock, flags);
	if (p != c) {
		raw_spin_lock_irqsave(&p->lock, flags);
		p->auid = auid;
		p->asid = asid;
		p->tid = tid;
		p->mask_gen = 0;
		p->setuid_count = 0;
		raw_spin_unlock_irqrestore(&p->lock, flags);
	}
	out->ev = local ? LXBSM_EV_LOGIN : LXBSM_EV_OPENSSH;
	out->failed = false;
	copy_snap(p, &out->proc);
	return true;
}

/*
 * A successful call that set @task's real uid (setuid, setreuid or
 * setresuid with a real uid given), made by root (@root: the caller's
 * credentials before the call).  In a login program's tree with no audit id
 * yet, outside a chroot, it is the login; otherwise it is counted.  In an
 * su or sudo tree, after a setgid call (by it, or inherited), it marks the
 * process as having changed identity: the next program it runs completes
 * the change (lxbsm_proc_exec()).
 */
void lxbsm_proc_setuid(struct task_struct *task, bool chrooted, bool root,
		       struct lxbsm_session_ev *out)
{
	struct lxbsm_proc *p, *c;
	unsigned long flags;
	bool login, idset;
	u32 uid;

	out->ev = LXBSM_EV_NR;
	rcu_read_lock();
	p = entry_of(task);
	if (!p)
		goto out;
	idset = atomic_read(&idcands) && candidate_of(task, PF_IDCAND);
	raw_spin_lock_irqsave(&p->lock, flags);
	p->setuid_count++;
	if (idset && p->flags & PF_GIDSET)
		p->flags |= PF_IDSET;
	login = p->auid == AUID_UNSET && !chrooted && root &&
		(p->prog == LXBSM_PROG_SSHD || p->prog == LXBSM_PROG_LOGIN);
	raw_spin_unlock_irqrestore(&p->lock, flags);
	if (!login)
		goto out;
	c = candidate_of(task, PF_CAND);
	if (!c)
		goto out;
	uid = lxbsm_uid(task_uid(task));
	start_session(c, p, uid, ASID_INFERRED + (atomic_inc_return(&inferred_asid) &
						  (ASID_INFERRED - 1)), out);
out:
	rcu_read_unlock();
}

/* Is an su or sudo process alive (cheap: no lookup)? */
bool lxbsm_proc_idchange_live(void)
{
	return atomic_read(&idcands);
}

/* A successful call that set @task's real gid: in an su or sudo tree, noted. */
void lxbsm_proc_setgid(struct task_struct *task)
{
	struct lxbsm_proc *p;
	unsigned long flags;

	if (!atomic_read(&idcands))
		return;
	rcu_read_lock();
	p = candidate_of(task, PF_IDCAND) ? entry_of(task) : NULL;
	if (p) {
		raw_spin_lock_irqsave(&p->lock, flags);
		p->flags |= PF_GIDSET;
		raw_spin_unlock_irqrestore(&p->lock, flags);
	}
	rcu_read_unlock();
}

/*
 * A write to /proc/self/loginuid set @task's audit id in the kernel.  The
 * audit id is set once: a process that has one keeps it.  A process with
 * none takes it only if the writer may set audit ids (@may: root or
 * CAP_AUDIT_CONTROL in the init user namespace); the kernel lets anyone
 * write it while it is unset, so without that a service account could pose
 * as any user.  In a candidate's tree a write by root is the login (@out); a
 * process with no network terminal takes its controlling tty (@tty).  Any
 * other write is told in @sa (AUE_SETAUID), with the writer as it was.
 */
void lxbsm_proc_set_login(struct task_struct *task, u32 auid, u32 asid, bool may,
			  const struct lxbsm_tid *tty, struct lxbsm_session_ev *out,
			  struct lxbsm_setauid *sa)
{
	struct lxbsm_proc *p, *c;
	unsigned long flags;
	bool fresh;

	out->ev = LXBSM_EV_NR;
	sa->how = LXBSM_SETAUID_NONE;
	rcu_read_lock();
	p = entry_of(task);
	if (!p)
		goto out;
	copy_snap(p, &sa->proc);
	raw_spin_lock_irqsave(&p->lock, flags);
	sa->old_auid = p->auid;
	fresh = p->auid == AUID_UNSET;
	if (fresh && may) {
		p->auid = auid;
		p->asid = asid;
		if (!(p->flags & PF_NETTID))
			p->tid = *tty;
		p->mask_gen = 0;
		p->setuid_count = 0;
	}
	raw_spin_unlock_irqrestore(&p->lock, flags);
	if (!fresh) {
		sa->how = LXBSM_SETAUID_KEPT;
		goto out;
	}
	if (!may) {
		sa->how = LXBSM_SETAUID_REFUSED;
		goto out;
	}
	c = candidate_of(task, PF_CAND);
	if (!c || !start_session(c, p, auid, asid, out))
		sa->how = LXBSM_SETAUID_SET;
out:
	rcu_read_unlock();
}

/*
 * @task now runs @prog (LXBSM_PROG_NONE for any other program).  A login
 * program counts only when root runs it (otherwise it is any program).  A
 * local login program with no audit id becomes a candidate, its terminal
 * @tty.  A network one already is when sshd forked it for a connection;
 * started by inetd or socket activation, it is one if the connection is on
 * its fd 0 (@peer, NULL if none).  su and sudo start an identity change.
 * A program run by a process that set its real uid in su's or sudo's tree
 * completes the change (@out); one run with the identity unchanged (a PAM
 * helper) does not.
 */
void lxbsm_proc_exec(struct task_struct *task, enum lxbsm_prog prog,
		     const struct lxbsm_tid *tty, const struct lxbsm_tid *peer,
		     struct lxbsm_session_ev *out)
{
	struct lxbsm_proc *p, *c = NULL;
	unsigned long flags;
	bool idset;

	out->ev = LXBSM_EV_NR;
	rcu_read_lock();
	if ((prog == LXBSM_PROG_LOGIN || prog == LXBSM_PROG_SSHD) &&
	    !cred_is_root(__task_cred(task)))
		prog = LXBSM_PROG_NONE;
	p = prog == LXBSM_PROG_NONE ? lookup_rcu(task_tgid_nr(task)) : entry_of(task);
	if (!p)
		goto out;
	/* First the change this program completes, then what it starts. */
	idset = READ_ONCE(p->flags) & PF_IDSET;
	if (idset && atomic_read(&idcands))
		c = candidate_of(task, PF_IDCAND);
	if (c) {
		raw_spin_lock_irqsave(&c->lock, flags);
		if (!(c->flags & PF_IDDONE)) {
			c->flags |= PF_IDDONE;
			out->ev = c->flags & PF_SUDO ? LXBSM_EV_SUDO : LXBSM_EV_SU;
			out->from_uid = c->from_uid;
			out->failed = false;
		}
		raw_spin_unlock_irqrestore(&c->lock, flags);
		if (out->ev != LXBSM_EV_NR)
			copy_snap(p, &out->proc);
	}
	raw_spin_lock_irqsave(&p->lock, flags);
	p->prog = prog;
	switch (prog) {
	case LXBSM_PROG_LOGIN:
	case LXBSM_PROG_SSHD:
		if (p->auid != AUID_UNSET || p->flags & PF_CAND)
			break;
		if (prog == LXBSM_PROG_LOGIN) {
			p->flags |= PF_CAND | PF_LOCAL;
			if (!(p->flags & PF_NETTID))
				p->tid = *tty;
		} else if (peer && !(p->flags & PF_NETTID)) {
			p->tid = *peer;
			p->flags |= PF_NETTID | PF_CAND;
		}
		break;
	case LXBSM_PROG_SU:
	case LXBSM_PROG_SUDO:
		if (!(p->flags & PF_IDCAND))
			atomic_inc(&idcands);
		p->flags &= ~(PF_IDDONE | PF_SUDO | PF_GIDSET | PF_IDSET);
		p->flags |= PF_IDCAND | (prog == LXBSM_PROG_SUDO ? PF_SUDO : 0);
		p->from_uid = lxbsm_uid(task_uid(task));
		break;
	default:
		break;
	}
	raw_spin_unlock_irqrestore(&p->lock, flags);
out:
	rcu_read_unlock();
}
