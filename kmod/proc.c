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
 * bucket group has a raw spinlock for insert and delete.  Allocation is
 * GFP_ATOMIC from a slab cache; a failure is counted, and the process is
 * then described from its task until an entry can be made.
 */
#include <linux/audit.h>
#include <linux/cred.h>
#include <linux/hash.h>
#include <linux/rculist.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>

#include "lxbsm.h"

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
	u32 flags;
	u32 setuid_count;
};

static struct hlist_head proc_hash[1 << PROC_HASH_BITS];
static raw_spinlock_t proc_locks[1 << PROC_LOCK_BITS];
static struct kmem_cache *proc_cache;
static atomic64_t proc_entries = ATOMIC64_INIT(0);
atomic64_t lxbsm_proc_alloc_failed = ATOMIC64_INIT(0);

static void proc_free_rcu(struct rcu_head *head)
{
	kmem_cache_free(proc_cache, container_of(head, struct lxbsm_proc, rcu));
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
	proc_cache = KMEM_CACHE(lxbsm_proc, 0);
	return proc_cache ? 0 : -ENOMEM;
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
			kmem_cache_free(proc_cache, p);
		}
	}
	atomic64_set(&proc_entries, 0);
	rcu_barrier();		/* entries freed by call_rcu() */
	kmem_cache_destroy(proc_cache);
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
	p->auid = from_kuid(&init_user_ns, audit_get_loginuid(task));
	p->asid = audit_get_sessionid(task);
	memset(&p->tid, 0, sizeof(p->tid));
	p->tid.type = 4;
	p->mask_gen = 0;
	p->flags = 0;
	p->setuid_count = 0;
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
		kmem_cache_free(proc_cache, new);
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
		p = kmem_cache_alloc(proc_cache, GFP_ATOMIC | __GFP_NOWARN);
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
	p = kmem_cache_alloc(proc_cache, GFP_ATOMIC | __GFP_NOWARN);
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
		p->flags = pp->flags;
		p->setuid_count = pp->setuid_count;
		raw_spin_unlock_irqrestore(&pp->lock, flags);
	} else {
		seed_from_task(parent, p);
	}
	rcu_read_unlock();
	p->tgid = task_tgid_nr(child);
	insert(p, true);
}

/* sched_process_exit of the last thread: the process is gone. */
bool lxbsm_proc_remove(struct task_struct *task)
{
	pid_t tgid = task_tgid_nr(task);
	u32 b = bucket_of(tgid);
	struct lxbsm_proc *p;
	unsigned long flags;

	raw_spin_lock_irqsave(lock_of(b), flags);
	p = lookup_rcu(tgid);
	if (p) {
		hlist_del_rcu(&p->node);
		atomic64_dec(&proc_entries);
	}
	raw_spin_unlock_irqrestore(lock_of(b), flags);
	if (p)
		call_rcu(&p->rcu, proc_free_rcu);
	return p;
}

/* A new login session (pam_loginuid, or one lxbsm inferred). */
void lxbsm_proc_set_login(struct task_struct *task, u32 auid, u32 asid)
{
	struct lxbsm_proc_snap snap;
	struct lxbsm_proc *p;
	unsigned long flags;

	lxbsm_proc_snapshot(task, &snap);	/* makes the entry if needed */
	rcu_read_lock();
	p = lookup_rcu(task_tgid_nr(task));
	if (p) {
		raw_spin_lock_irqsave(&p->lock, flags);
		p->auid = auid;
		p->asid = asid;
		p->mask_gen = 0;
		p->setuid_count = 0;
		raw_spin_unlock_irqrestore(&p->lock, flags);
	}
	rcu_read_unlock();
}
