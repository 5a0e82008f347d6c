// SPDX-License-Identifier: GPL-2.0
/*
 * Exec control: the rules of the exec_control file, pushed whole by the
 * daemon (LXBSM_IOC_SET_EXEC_RULES), matched against the file the kernel is
 * about to run or map executable.
 *
 * A rule names a file by device and inode (which the daemon asks of the
 * module, LXBSM_IOC_FILE_ID, when the rules load) and by its canonical
 * path, compared with the kernel's own d_path() of the file: a hard link,
 * a bind mount or another mount namespace reaches the same inode; a
 * package upgrade that replaces the file puts a new inode at the same
 * path.  Neither depends on the name the caller typed.  The first rule
 * that matches the file and the caller decides; no match allows.
 *
 * A sha256 rule names content: any file whose bytes hash to it.  Hashing
 * reads the file, which a handler may not do, so the digest of each file
 * (by its identity, see the digest cache below) is kept once known.  A
 * file not in the cache is hashed by its process in task_work, on the way
 * back to user space, before the new program's first instruction: if a
 * sha256 rule then denies it, the process is killed (enforce and kill
 * modes) and the refusal recorded; from then on the cached digest makes
 * the refusal an EACCES at the exec, like any other rule.
 *
 * Never subject to the rules: kernel threads, and the process that holds
 * the ring (the audit daemon), so that no rule can stop auditing.
 *
 * Everything here except the hashing may run in a kprobe handler: RCU,
 * atomics, no sleeping.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/dcache.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hash.h>
#include <linux/iversion.h>
#include <linux/kdev_t.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/stringhash.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "hooks.h"
#include "later.h"
#include "pool.h"
#include "xctl.h"

#ifdef LXBSM_HAVE_TASK_WORK
#define XC_CAN_HASH 1
#else
#define XC_CAN_HASH 0
#endif

/*
 * A rule set, with the rules indexed twice so that a check costs a hash
 * lookup whatever the number of rules: by inode and by path.  Each bucket is
 * a chain of rule indexes in rule order (first match wins), -1 terminated.
 */
#define XC_HASH_BITS	10

struct lxbsm_xc {
	struct rcu_head rcu;
	u32 mode;
	u32 nr;
	bool need_path;			/* some rule names a path */
	s32 first_sha;			/* the first sha256 rule, or -1 */
	atomic64_t *hits;		/* nr counters */
	s32 *next_ino, *next_path, *next_sha;	/* nr chain links each */
	s32 by_ino[1 << XC_HASH_BITS];
	s32 by_path[1 << XC_HASH_BITS];
	s32 by_sha[1 << XC_HASH_BITS];
	struct lxbsm_xc_rule rules[];
};

static u32 ino_hash(u64 dev, u64 ino)
{
	return hash_64(ino ^ (dev << 32) ^ dev, XC_HASH_BITS);
}

static u32 path_hash(const char *path)
{
	return hash_32(full_name_hash(NULL, path, strlen(path)), XC_HASH_BITS);
}

static u32 sha_hash(const u8 *sha)
{
	return hash_32(get_unaligned((const u32 *)sha), XC_HASH_BITS);
}

static struct lxbsm_xc __rcu *xc_rules;
static DEFINE_MUTEX(xc_mutex);
static atomic64_t xc_denied = ATOMIC64_INIT(0);

/*
 * The thread group that holds the ring, by its struct pid (referenced while
 * the consumer file is open), never by number: a pid number is reused by
 * any later process once its owner is gone, the struct pid is not.
 */
static struct pid __rcu *consumer;
static DEFINE_MUTEX(consumer_mutex);

static const char *const mode_word[LXBSM_XC_MODE_NR] = {
	[LXBSM_XC_ENFORCE] = "denied",
	[LXBSM_XC_MONITOR] = "would be denied",
	[LXBSM_XC_KILL] = "killed",
};

static void file_id(const struct file *f, u64 *dev, u64 *ino)
{
	const struct inode *inode = file_inode(f);

	*dev = new_encode_dev(inode->i_sb->s_dev);
	*ino = inode->i_ino;
}

/*
 * ---- the digest cache: what each file's content hashes to, by identity.
 *
 * An entry is only ever made for content that cannot change without the
 * identity changing too (see ident_for_hash()): device, inode number and
 * generation (a reused inode number has another generation, and a later
 * ctime), size, ctime, and i_version where the filesystem keeps it.  A file
 * open for writing (or mapped shared and writable: the mapping keeps its
 * file open) is never looked up nor cached, since a write through a mapping
 * changes neither ctime nor i_version.  Bounded: when full, one entry goes,
 * the least recently used by the clock (second chance) rule. ----
 */
#define DIGEST_BITS	10
static unsigned int digest_cache_entries = 4096;
module_param(digest_cache_entries, uint, 0444);
MODULE_PARM_DESC(digest_cache_entries, "Digests of files kept for exec control (default 4096, at least 16)");
#define DIGEST_SCAN	32		/* referenced entries passed over per eviction */
#define HASH_FILE_MAX	(256 << 20)	/* larger files are not hashed */

struct file_ident {
	u64 dev, ino, iversion;
	u32 gen;
	struct timespec64 ctime;
	loff_t size;
};

struct xc_digest {
	struct hlist_node node;
	struct list_head lru;		/* oldest first, under digest_lock */
	struct rcu_head rcu;
	struct file_ident id;
	bool referenced;		/* looked up since the clock last passed */
	u8 sha[SHA256_DIGEST_SIZE];
};

static struct hlist_head digests[1 << DIGEST_BITS];
static LIST_HEAD(digest_lru);
static DEFINE_RAW_SPINLOCK(digest_lock);
static unsigned int nr_digests;
static atomic64_t digests_hashed = ATOMIC64_INIT(0);	/* files read and hashed */
static atomic64_t digests_evicted = ATOMIC64_INIT(0);
static atomic64_t digests_uncached = ATOMIC64_INIT(0);	/* hashed, not cacheable */

static void ident_of(const struct file *f, struct file_ident *id)
{
	const struct inode *inode = file_inode(f);

	file_id(f, &id->dev, &id->ino);
	id->gen = inode->i_generation;
	id->ctime = lxbsm_inode_ctime(inode);
	id->size = i_size_read(inode);
	id->iversion = IS_I_VERSION(inode) ? inode_peek_iversion(inode) : 0;
}

/* Someone may write the file now (an fd open for writing, a shared mapping). */
static bool open_for_write(const struct file *f)
{
	return atomic_read(&file_inode(f)->i_writecount) > 0;
}

static bool same_file(const struct xc_digest *d, const struct file_ident *id)
{
	return d->id.ino == id->ino && d->id.dev == id->dev && d->id.gen == id->gen &&
	       d->id.size == id->size && d->id.iversion == id->iversion &&
	       timespec64_equal(&d->id.ctime, &id->ctime);
}

/* Under rcu_read_lock(): the file's digest, if known. */
static bool digest_lookup(const struct file_ident *id, u8 *sha)
{
	struct xc_digest *d;

	hlist_for_each_entry_rcu(d, &digests[hash_64(id->ino, DIGEST_BITS)], node) {
		if (same_file(d, id)) {
			memcpy(sha, d->sha, sizeof(d->sha));
			if (!READ_ONCE(d->referenced))
				WRITE_ONCE(d->referenced, true);
			return true;
		}
	}
	return false;
}

static void digest_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct xc_digest, rcu));
}

static void digest_del_locked(struct xc_digest *d)
{
	hlist_del_rcu(&d->node);
	list_del(&d->lru);
	call_rcu(&d->rcu, digest_free_rcu);
	nr_digests--;
}

/* Make room for one entry: the oldest not looked up since the clock passed. */
static void digest_evict_one_locked(void)
{
	struct xc_digest *d;
	int i;

	for (i = 0; i < DIGEST_SCAN; i++) {
		d = list_first_entry(&digest_lru, struct xc_digest, lru);
		if (!READ_ONCE(d->referenced))
			break;
		WRITE_ONCE(d->referenced, false);
		list_move_tail(&d->lru, &digest_lru);
	}
	digest_del_locked(list_first_entry(&digest_lru, struct xc_digest, lru));
	atomic64_inc(&digests_evicted);
}

static void digests_clear_locked(void)
{
	struct xc_digest *d, *tmp;

	list_for_each_entry_safe(d, tmp, &digest_lru, lru)
		digest_del_locked(d);
}

/* /sys/class/misc/lxbsm/exec_control/: what the digest cache did. */
static ssize_t digests_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(nr_digests));
}

static ssize_t hashed_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&digests_hashed));
}

static ssize_t evicted_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&digests_evicted));
}

static ssize_t not_cached_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&digests_uncached));
}

static DEVICE_ATTR_RO(digests);
static DEVICE_ATTR_RO(hashed);
static DEVICE_ATTR_RO(evicted);
static DEVICE_ATTR_RO(not_cached);

static struct attribute *xc_attrs[] = {
	&dev_attr_digests.attr,
	&dev_attr_hashed.attr,
	&dev_attr_evicted.attr,
	&dev_attr_not_cached.attr,
	NULL,
};

static const struct attribute_group xc_group = {
	.name = "exec_control",
	.attrs = xc_attrs,
};

const struct attribute_group *lxbsm_xc_groups[] = { &xc_group, NULL };

bool lxbsm_xc_active(void)
{
	const struct lxbsm_xc *x;
	bool on;

	rcu_read_lock();
	x = rcu_dereference(xc_rules);
	on = x && x->mode != LXBSM_XC_OFF && x->nr;
	rcu_read_unlock();
	return on;
}

/*
 * @pid (referenced by the caller, or NULL) becomes the exempt consumer.  The
 * previous one is dropped after a grace period, so that no handler can still
 * compare against it when its memory is reused for another process's pid.
 */
void lxbsm_xc_set_consumer(struct pid *pid)
{
	struct pid *old;

	mutex_lock(&consumer_mutex);
	old = rcu_replace_pointer(consumer, pid, lockdep_is_held(&consumer_mutex));
	mutex_unlock(&consumer_mutex);
	if (old) {
		synchronize_rcu();
		put_pid(old);
	}
}

/* Is current in the thread group that holds the ring (the audit daemon)? */
bool lxbsm_current_is_consumer(void)
{
	bool ret;

	rcu_read_lock();
	ret = rcu_dereference(consumer) == task_tgid(current);
	rcu_read_unlock();
	return ret;
}

/* Is the ring being read (its consumer's file open)? */
bool lxbsm_consumer_present(void)
{
	return rcu_access_pointer(consumer) != NULL;
}

static bool exempt(void)
{
	return lxbsm_kthread() || lxbsm_current_is_consumer();
}

/* The caller's audit id, looked up once per check and only if a rule asks. */
struct lazy_auid {
	bool known;
	u32 auid;
};

static u32 auid_of_current(struct lazy_auid *a)
{
	if (!a->known) {
		struct lxbsm_proc_snap snap;

		lxbsm_proc_snapshot(current, &snap);
		a->auid = snap.auid;
		a->known = true;
	}
	return a->auid;
}

static bool who_matches(const struct lxbsm_xc_rule *rule, struct lazy_auid *auid)
{
	const struct cred *c = current_cred();
	kgid_t gid;

	switch (rule->who) {
	case LXBSM_XC_ANYONE:
		return true;
	case LXBSM_XC_UID:
		return rule->id == lxbsm_uid(c->uid) ||
		       rule->id == lxbsm_uid(c->euid) ||
		       rule->id == auid_of_current(auid);
	case LXBSM_XC_GID:
		gid = make_kgid(&init_user_ns, rule->id);
		return gid_valid(gid) && (gid_eq(gid, c->gid) || in_egroup_p(gid));
	case LXBSM_XC_AUID:
		return rule->id == auid_of_current(auid);
	}
	return false;
}

/*
 * Which rule decides @file for current.  @buf (of @len bytes) holds the
 * file's path once it is needed.  Returns false when no deny rule matched
 * (or exec control is off or current is exempt); otherwise fills @v.
 * @known: the digest just computed (hash_work): the file already runs, so an
 * enforced deny kills.  Otherwise the cache is asked.
 */
static bool xc_check(const struct file *file, char *buf, int len, struct lxbsm_xc_verdict *v,
		     const u8 *known)
{
	const struct lxbsm_xc *x;
	const char *path = NULL;
	struct lazy_auid auid = { .known = false };
	struct file_ident id;
	u8 sha[SHA256_DIGEST_SIZE];
	bool deny = false, have_sha = false;
	s32 a, b, c, i = S32_MAX;
	const char *word;

	v->path = NULL;
	v->need_hash = false;
	if (exempt())
		return false;
	ident_of(file, &id);
	rcu_read_lock();
	x = rcu_dereference(xc_rules);
	if (!x || x->mode == LXBSM_XC_OFF)
		goto out;
	if (x->need_path && buf) {
		path = lxbsm_d_path(&file->f_path, buf, len);
		if (IS_ERR(path))
			path = NULL;
		v->path = path;
	}
	if (known) {
		memcpy(sha, known, sizeof(sha));
		have_sha = true;
	} else if (x->first_sha >= 0 && !open_for_write(file)) {
		have_sha = digest_lookup(&id, sha);
	}
	/* Walk the chains in rule order: the first rule that applies decides. */
	a = x->by_ino[ino_hash(id.dev, id.ino)];
	b = path ? x->by_path[path_hash(path)] : -1;
	c = have_sha ? x->by_sha[sha_hash(sha)] : -1;
	while (a >= 0 || b >= 0 || c >= 0) {
		const struct lxbsm_xc_rule *rule;
		bool hit = false;

		i = S32_MAX;
		if (a >= 0)
			i = a;
		if (b >= 0 && b < i)
			i = b;
		if (c >= 0 && c < i)
			i = c;
		rule = &x->rules[i];
		/* A rule may be on several chains: advance each that holds it. */
		if (a == i) {
			hit |= rule->flags & LXBSM_XC_INODE && rule->dev == id.dev &&
			       rule->ino == id.ino;
			a = x->next_ino[a];
		}
		if (b == i) {
			hit |= !strcmp(rule->path, path);
			b = x->next_path[b];
		}
		if (c == i) {
			hit |= rule->flags & LXBSM_XC_SHA256 && !memcmp(rule->sha256, sha, sizeof(sha));
			c = x->next_sha[c];
		}
		if (!hit || !who_matches(rule, &auid)) {
			i = S32_MAX;
			continue;
		}
		atomic64_inc(&x->hits[i]);
		if (rule->action != LXBSM_XC_DENY)
			break;
		deny = true;
		v->mode = x->mode;
		if (x->mode != LXBSM_XC_MONITOR)
			atomic64_inc(&xc_denied);
		word = mode_word[known && x->mode == LXBSM_XC_ENFORCE ? LXBSM_XC_KILL : x->mode];
		if (rule->flags & LXBSM_XC_SHA256)
			snprintf(v->text, sizeof(v->text),
				 "exec_control: %s by line %u (deny sha256:%*phN)",
				 word, rule->line, SHA256_DIGEST_SIZE, rule->sha256);
		else
			snprintf(v->text, sizeof(v->text), "exec_control: %s by line %u (deny %s)",
				 word, rule->line,
				 rule->path[0] ? rule->path : path ? path : "(inode)");
		break;
	}
	/* A sha256 rule before the one that decided (if any) needs the digest. */
	v->need_hash = XC_CAN_HASH && x->first_sha >= 0 && !have_sha && x->first_sha < i &&
		       id.size <= HASH_FILE_MAX;
out:
	rcu_read_unlock();
	return deny;
}

bool lxbsm_xc_check(const struct file *file, char *buf, int len, struct lxbsm_xc_verdict *v)
{
	return xc_check(file, buf, len, v, NULL);
}

static void xc_free_rcu(struct rcu_head *head)
{
	kvfree(container_of(head, struct lxbsm_xc, rcu));
}

static void xc_replace(struct lxbsm_xc *new)
{
	struct lxbsm_xc *old;

	mutex_lock(&xc_mutex);
	old = rcu_replace_pointer(xc_rules, new, lockdep_is_held(&xc_mutex));
	mutex_unlock(&xc_mutex);
	if (old)
		call_rcu(&old->rcu, xc_free_rcu);
}

long lxbsm_xc_set(const struct lxbsm_xc_config __user *ureq)
{
	struct lxbsm_xc_config req;
	struct lxbsm_xc *x;
	size_t size;
	u32 i;

	if (copy_from_user(&req, ureq, sizeof(req)))
		return -EFAULT;
	if (req.mode >= LXBSM_XC_MODE_NR || req.nr_rules > LXBSM_XC_MAX_RULES || req.hits ||
	    req.denied)
		return -EINVAL;
	size = struct_size(x, rules, req.nr_rules) +
	       req.nr_rules * (sizeof(atomic64_t) + 3 * sizeof(s32));
	x = kvzalloc(size, GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	x->mode = req.mode;
	x->nr = req.nr_rules;
	x->hits = (atomic64_t *)&x->rules[x->nr];
	x->next_ino = (s32 *)&x->hits[x->nr];
	x->next_path = &x->next_ino[x->nr];
	x->next_sha = &x->next_path[x->nr];
	x->first_sha = -1;
	memset(x->by_ino, 0xff, sizeof(x->by_ino));	/* -1: empty */
	memset(x->by_path, 0xff, sizeof(x->by_path));
	memset(x->by_sha, 0xff, sizeof(x->by_sha));
	if (copy_from_user(x->rules, u64_to_user_ptr(req.rules),
			   array_size(x->nr, sizeof(x->rules[0])))) {
		kvfree(x);
		return -EFAULT;
	}
	for (i = 0; i < x->nr; i++) {
		struct lxbsm_xc_rule *rule = &x->rules[i];
		bool sha = rule->flags & LXBSM_XC_SHA256;

		if (rule->action > LXBSM_XC_DENY || rule->who >= LXBSM_XC_WHO_NR ||
		    rule->flags & ~(LXBSM_XC_INODE | LXBSM_XC_SHA256) || rule->reserved ||
		    strnlen(rule->path, sizeof(rule->path)) == sizeof(rule->path) ||
		    (rule->path[0] && rule->path[0] != '/') ||
		    (sha && (rule->path[0] || rule->flags & LXBSM_XC_INODE)) ||
		    (!sha && !rule->path[0] && !(rule->flags & LXBSM_XC_INODE))) {
			kvfree(x);
			return -EINVAL;
		}
		if (sha && !XC_CAN_HASH) {
			kvfree(x);
			return -EOPNOTSUPP;
		}
		x->need_path |= rule->path[0] != '\0';
		if (sha && x->first_sha < 0)
			x->first_sha = i;
	}
	/* Chains in rule order: insert from the last rule to the first. */
	for (i = x->nr; i-- > 0;) {
		struct lxbsm_xc_rule *rule = &x->rules[i];
		s32 *head;

		x->next_ino[i] = -1;
		x->next_path[i] = -1;
		x->next_sha[i] = -1;
		if (rule->flags & LXBSM_XC_SHA256) {
			head = &x->by_sha[sha_hash(rule->sha256)];
			x->next_sha[i] = *head;
			*head = i;
		}
		if (rule->flags & LXBSM_XC_INODE) {
			head = &x->by_ino[ino_hash(rule->dev, rule->ino)];
			x->next_ino[i] = *head;
			*head = i;
		}
		if (rule->path[0]) {
			head = &x->by_path[path_hash(rule->path)];
			x->next_path[i] = *head;
			*head = i;
		}
	}
	xc_replace(x);
	/* Exec control's hooks are armed while it has rules (hooks.c). */
	lxbsm_hooks_arm();
	return 0;
}

long lxbsm_xc_get(struct lxbsm_xc_config __user *ureq)
{
	struct lxbsm_xc_config req;
	struct lxbsm_xc_rule *rules = NULL;
	const struct lxbsm_xc *x;
	u64 *hits = NULL;
	long ret = 0;
	u32 i, n;

	if (copy_from_user(&req, ureq, sizeof(req)))
		return -EFAULT;
	if (req.nr_rules > LXBSM_XC_MAX_RULES)
		return -EINVAL;
	if (req.nr_rules) {
		rules = kvcalloc(req.nr_rules, sizeof(*rules), GFP_KERNEL);
		hits = kvcalloc(req.nr_rules, sizeof(*hits), GFP_KERNEL);
		if (!rules || !hits) {
			ret = -ENOMEM;
			goto out;
		}
	}
	mutex_lock(&xc_mutex);
	x = rcu_dereference_protected(xc_rules, lockdep_is_held(&xc_mutex));
	req.mode = x ? x->mode : LXBSM_XC_OFF;
	n = x ? min(x->nr, req.nr_rules) : 0;
	for (i = 0; i < n; i++) {
		rules[i] = x->rules[i];
		hits[i] = atomic64_read(&x->hits[i]);
	}
	req.nr_rules = x ? x->nr : 0;
	mutex_unlock(&xc_mutex);
	req.denied = atomic64_read(&xc_denied);
	if ((n && (copy_to_user(u64_to_user_ptr(req.rules), rules, array_size(n, sizeof(*rules))) ||
		   copy_to_user(u64_to_user_ptr(req.hits), hits, array_size(n, sizeof(*hits))))) ||
	    copy_to_user(ureq, &req, sizeof(req)))
		ret = -EFAULT;
out:
	kvfree(rules);
	kvfree(hits);
	return ret;
}

long lxbsm_xc_file_id(struct lxbsm_file_id __user *ureq)
{
	struct lxbsm_file_id req;
	struct file *f;

	if (copy_from_user(&req, ureq, sizeof(req)))
		return -EFAULT;
	if (req.reserved)
		return -EINVAL;
	f = fget_raw(req.fd);
	if (!f)
		return -EBADF;
	file_id(f, &req.dev, &req.ino);
	fput(f);
	return copy_to_user(ureq, &req, sizeof(req)) ? -EFAULT : 0;
}

void lxbsm_xc_exit(void)
{
	struct lxbsm_xc *x = rcu_dereference_protected(xc_rules, true);
	unsigned long flags;

	RCU_INIT_POINTER(xc_rules, NULL);
	raw_spin_lock_irqsave(&digest_lock, flags);
	digests_clear_locked();
	raw_spin_unlock_irqrestore(&digest_lock, flags);
	rcu_barrier();		/* rule sets and digests freed by call_rcu() */
	kvfree(x);
}

/*
 * ---- hashing, in the process's own context (task_work) ----
 */
struct hash_job {
	struct callback_head cb;
	struct file *file;
	u64 exec_id;			/* current->self_exec_id when queued */
	bool exec;			/* an exec (else an executable mapping) */
};

/*
 * Jobs come from a pool (pool.h).  One is queued per exec or executable
 * mapping of a file whose digest is not cached, or to kill a program in kill
 * mode (lxbsm_xc_kill_current()), and runs before the process returns to
 * user space: 256 (16 KiB) serve that many processes at once.  Without a
 * job the file runs unhashed, as when the module is going.
 */
#define HASH_JOB_POOL	(XC_CAN_HASH ? 256 : 0)
LXBSM_POOL_DEFINE(lxbsm_hash_job_pool, "hash job", sizeof(struct hash_job), HASH_JOB_POOL);

#if XC_CAN_HASH

static int hash_file(struct file *file, u8 *out)
{
	struct lxbsm_sha256 st;
	loff_t pos = 0;
	ssize_t n;
	void *buf;

	buf = kmalloc(PAGE_SIZE * 4, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	lxbsm_sha256_init(&st);
	while ((n = kernel_read(file, buf, PAGE_SIZE * 4, &pos)) > 0) {
		lxbsm_sha256_update(&st, buf, n);
		if (pos > HASH_FILE_MAX || fatal_signal_pending(current)) {
			n = -EFBIG;
			break;
		}
		cond_resched();
	}
	kfree(buf);
	if (n < 0)
		return n;
	lxbsm_sha256_final(&st, out);
	return 0;
}

/*
 * The identity of @f before it is read for hashing, and whether a digest of
 * what is read may be cached under it.  Not if the file is open for writing,
 * nor if its ctime is not yet in the past: a write in the same clock tick
 * would leave ctime as it is.  Otherwise any write that starts after this
 * (its writer opens the file after the check) stamps a later ctime and, where
 * the filesystem keeps one, a new i_version (queried here, so that the next
 * change increments it).  The system clock set back by root is not covered.
 */
static bool ident_for_hash(const struct file *f, struct file_ident *id)
{
	struct inode *inode = file_inode(f);
	struct timespec64 now = current_time(inode);
	bool writers;

	writers = open_for_write(f);
	smp_mb();		/* the check above before the reads below */
	ident_of(f, id);
	if (IS_I_VERSION(inode))
		id->iversion = inode_query_iversion(inode);
	return !writers && timespec64_compare(&id->ctime, &now) < 0;
}

static void digest_insert(const struct file_ident *id, const u8 *sha)
{
	struct xc_digest *d = kmalloc(sizeof(*d), GFP_KERNEL);
	unsigned long flags;
	u8 old[SHA256_DIGEST_SIZE];
	bool known;

	if (!d)
		return;
	d->id = *id;
	d->referenced = false;
	memcpy(d->sha, sha, sizeof(d->sha));
	raw_spin_lock_irqsave(&digest_lock, flags);
	rcu_read_lock();
	known = digest_lookup(id, old);
	rcu_read_unlock();
	if (!known) {
		if (nr_digests >= max(digest_cache_entries, 16U))
			digest_evict_one_locked();
		hlist_add_head_rcu(&d->node, &digests[hash_64(id->ino, DIGEST_BITS)]);
		list_add_tail(&d->lru, &digest_lru);
		nr_digests++;
	}
	raw_spin_unlock_irqrestore(&digest_lock, flags);
	if (known)
		kfree(d);
}

/* The file is hashed now; if a rule denies it, act as the mode says. */
static void hash_work(struct callback_head *cb)
{
	struct hash_job *job = container_of(cb, struct hash_job, cb);
	struct lxbsm_xc_verdict *v = NULL;
	struct lxbsm_proc_snap snap;
	u8 sha[SHA256_DIGEST_SIZE];
	struct file_ident id;
	struct lxbsm_attr attr;
	struct lxbsm_rec *r;
	char *buf = NULL;
	bool cacheable;

	if (lxbsm_later_unloading())
		goto out;
	cacheable = ident_for_hash(job->file, &id);
	if (hash_file(job->file, sha))
		goto out;
	atomic64_inc(&digests_hashed);
	/* A writer that came and went while it was read: not cached either. */
	if (cacheable && !open_for_write(job->file))
		digest_insert(&id, sha);
	else
		atomic64_inc(&digests_uncached);
	/* An exec that failed after the check ran nothing: nothing to stop. */
	if (job->exec && current->self_exec_id == job->exec_id)
		goto out;
	v = kmalloc(sizeof(*v), GFP_KERNEL);
	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	/* Refused after it was let through: the record says it was killed. */
	if (!v || !buf || !xc_check(job->file, buf, PATH_MAX, v, sha))
		goto out;
	if (!v->path)
		v->path = d_path(&job->file->f_path, buf, PATH_MAX);
	lxbsm_attr_of(file_inode(job->file), &attr);
	lxbsm_proc_snapshot(current, &snap);
	r = lxbsm_rec_begin(job->exec ? LXBSM_EV_EXECVE : LXBSM_EV_MMAP);
	if (r) {
		lxbsm_tok_path(r, IS_ERR(v->path) ? "" : v->path);
		lxbsm_tok_attr32(r, &attr);
		lxbsm_tok_text(r, v->text);
		lxbsm_rec_finish(r, &snap, v->mode == LXBSM_XC_MONITOR ? 0 : -EACCES);
	}
	/* The program has not run an instruction: it ends here. */
	if (v->mode != LXBSM_XC_MONITOR)
		send_sig(SIGKILL, current, 1);
out:
	kfree(buf);
	kfree(v);
	fput(job->file);
	lxbsm_pool_put(&lxbsm_hash_job_pool, job);
	lxbsm_later_done(false);
}

/*
 * task_work of lxbsm_xc_kill_current(): SIGKILL, in the process's context
 * on its way back to user space, so it runs no instruction of the program.
 */
static void kill_work(struct callback_head *cb)
{
	send_sig(SIGKILL, current, 1);
	lxbsm_pool_put(&lxbsm_hash_job_pool, container_of(cb, struct hash_job, cb));
	lxbsm_later_done(false);
}

/*
 * From a handler: kill current before it runs another instruction in user
 * space.  send_sig() takes siglock, a sleeping lock on PREEMPT_RT, which a
 * handler must not take: the signal is sent from task_work, with a job of
 * the hash pool (and held like a hash job, see lxbsm_xc_hash_later()).
 * Without one (the pool empty, the module going), it is sent at once: a
 * program refused is never let run.
 */
void lxbsm_xc_kill_current(void)
{
	struct hash_job *job;

	if (current->flags & PF_EXITING)	/* runs no more user code */
		return;
	job = lxbsm_pool_get(&lxbsm_hash_job_pool);
	if (job) {
		job->file = NULL;
		if (lxbsm_later(&job->cb, kill_work))
			return;
		lxbsm_pool_put(&lxbsm_hash_job_pool, job);
	}
	send_sig(SIGKILL, current, 1);
}

/* From a handler: hash @file before current runs it (see hash_work). */
void lxbsm_xc_hash_later(struct file *file, bool exec)
{
	struct hash_job *job;

	if (lxbsm_kthread() || current->flags & PF_EXITING || lxbsm_later_unloading())
		return;
	/*
	 * A queued job holds the module until it has run (later.h): the task
	 * may block in the kernel before it gets to it (the rest of an exec
	 * reading from a hung filesystem), and the read may block (FUSE, a
	 * hung disk).  None is queued once the module is going: that file runs
	 * unhashed.
	 */
	job = lxbsm_pool_get(&lxbsm_hash_job_pool);
	if (!job)
		return;
	job->file = get_file(file);
	job->exec = exec;
	job->exec_id = current->self_exec_id;
	if (lxbsm_later(&job->cb, hash_work))
		return;
	fput(file);
	lxbsm_pool_put(&lxbsm_hash_job_pool, job);
}
#else
void lxbsm_xc_hash_later(struct file *file, bool exec)
{
}

void lxbsm_xc_kill_current(void)
{
	send_sig(SIGKILL, current, 1);
}
#endif

/*
 * security_mmap_file(struct file *file, unsigned long prot, unsigned long
 * flags): a file mapped executable outside exec, i.e. the dynamic loader
 * run by hand ("ld.so /usr/bin/df"), which never execs the program.  The
 * kernel's own mappings during an exec are left alone: that file was
 * judged at security_bprm_check.
 */
struct mmap_ctx {
	bool deny;
	struct file *file;		/* the caller holds it until after the return */
	struct lxbsm_xc_verdict v;
	struct lxbsm_attr attr;
};

size_t lxbsm_mmap_data_size(void)
{
	return sizeof(struct mmap_ctx);
}

int lxbsm_mmap_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)regs_get_kernel_argument(regs, 0);
	unsigned long prot = regs_get_kernel_argument(regs, 1);
	struct mmap_ctx *ctx = (struct mmap_ctx *)ri->data;
	char *buf;
	bool deny;

	if (!file || !(prot & PROT_EXEC) || current->in_execve)
		return 1;
	buf = lxbsm_hook_pathbuf_get();
	deny = lxbsm_xc_check(file, buf, LXBSM_PATH_MAX, &ctx->v);
	if (buf)
		lxbsm_hook_pathbuf_put(buf);
	ctx->v.path = NULL;		/* it was in buf */
	if (!deny) {
		if (ctx->v.need_hash)
			lxbsm_xc_hash_later(file, false);
		return 1;
	}
	/* The record's path is made at the return, in the record's buffer. */
	ctx->file = file;
	lxbsm_attr_of(file_inode(file), &ctx->attr);
	ctx->deny = ctx->v.mode == LXBSM_XC_ENFORCE;
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_mmap_entry);

int lxbsm_mmap_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct mmap_ctx *ctx = (struct mmap_ctx *)ri->data;
	long ret = (int)regs_return_value(regs);	/* an int function */
	struct lxbsm_proc_snap snap;
	struct lxbsm_rec *r;

	if (ctx->deny && ret == 0) {
		ret = -EACCES;
		regs_set_return_value(regs, ret);
	}
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	lxbsm_proc_snapshot(current, &snap);
	r = lxbsm_rec_begin(LXBSM_EV_MMAP);
	if (r) {
		lxbsm_tok_file_path(r, ctx->file);
		lxbsm_tok_attr32(r, &ctx->attr);
		lxbsm_tok_text(r, ctx->v.text);
		lxbsm_rec_finish(r, &snap, ret);
	}
	if (ctx->v.mode == LXBSM_XC_KILL)
		lxbsm_xc_kill_current();
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_mmap_ret);
