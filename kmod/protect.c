// SPDX-License-Identifier: GPL-2.0
/*
 * Protected trees: every change to a regular file below one becomes a
 * journal record in the ring (AUE_LXBSM_J*, whatever the masks say), from
 * which the daemon keeps the change journal of lxbsm-recover
 * (docs/recovery.md gives the records' tokens).
 *
 * The handlers only note what a call is about to change, with a reference
 * that keeps it (the file, or the inode and the path as text), and hand
 * that to the task's own work on its way back to user space (later.h).
 * There, where it may sleep, fault and take any lock, the change is settled
 * and read: the bytes a range holds after a write, the size after a
 * truncation, whether an unlink or a rename took place.  A record says what
 * the file holds after the change, never what was asked for, so a range
 * read larger than what was written, or read twice, is still right.
 *
 *   rw_verify_area		write, pwrite, writev, pwritev, copy_file_range,
 *				splice, sendfile and io_uring writes: the file,
 *				the position and the count asked for
 *   vfs_fallocate		fallocate
 *   security_path_truncate	truncate; before 6.2 also ftruncate and O_TRUNC
 *   security_file_truncate	ftruncate and O_TRUNC from 6.2 on
 *   security_path_unlink, _rename, _link, _mknod (creation), _chmod, _chown
 *   security_mmap_file		a shared writable mapping: its file is read
 *				whole when its last reference goes
 *   security_file_free		... which is this (from __fput)
 *
 * Which files: the file's dentry has a tree's directory among its
 * ancestors, walked under RCU and checked against rename_lock's seqcount
 * (never its lock: handlers run with preemption off, and it sleeps on
 * PREEMPT_RT).  A walk that keeps being torn by renames counts as inside:
 * a record too many is harmless, one too few is not.
 *
 * Nothing is silently missed: a change that cannot be captured (no work
 * item, the task exiting, no memory, no room in the ring within
 * protect_wait_ms) becomes an AUE_LXBSM_JLOST record naming the file and
 * the range, or, when even that cannot go in, a counted loss the trail
 * shows.  The daemon's own writes are not captured (it is the ring's only
 * reader: its journal must not be below a tree).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dcache.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/namei.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/seqlock.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "hooks.h"
#include "later.h"
#include "lxbsm.h"
#include "pool.h"
#include "protect.h"
#include "xctl.h"

static unsigned int protect_wait_ms = 5000;
module_param(protect_wait_ms, uint, 0644);
MODULE_PARM_DESC(protect_wait_ms,
		 "how long a change to a protected file waits for room in the ring before it is lost");

static void mwatch_drop_all(void);

/* ---- the trees ---- */

struct pset {
	struct rcu_head rcu;
	unsigned int nr;
	struct path tree[LXBSM_PROTECT_MAX];
};

static struct pset __rcu *pset;
static DEFINE_MUTEX(pset_lock);
static atomic64_t n_records = ATOMIC64_INIT(0);
static atomic64_t n_bytes = ATOMIC64_INIT(0);
static atomic64_t n_lost = ATOMIC64_INIT(0);

bool lxbsm_protect_active(void)
{
	return rcu_access_pointer(pset) != NULL;
}

static void pset_free(struct pset *ps)
{
	unsigned int i;

	if (!ps)
		return;
	for (i = 0; i < ps->nr; i++)
		path_put(&ps->tree[i]);
	kfree(ps);
}

/* Process context: replace the trees (LXBSM_IOC_SET_PROTECT). */
long lxbsm_protect_set(void __user *arg)
{
	struct lxbsm_protect req;
	struct pset *ps = NULL, *old;
	unsigned int i;
	long ret = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.nr_trees > LXBSM_PROTECT_MAX || req.reserved)
		return -EINVAL;
	if (req.nr_trees) {
		ps = kzalloc(sizeof(*ps), GFP_KERNEL);
		if (!ps)
			return -ENOMEM;
		for (i = 0; i < req.nr_trees; i++) {
			struct file *f = fget_raw(req.fd[i]);	/* O_PATH too */

			if (!f) {
				ret = -EBADF;
				break;
			}
			if (!d_is_dir(f->f_path.dentry)) {
				fput(f);
				ret = -ENOTDIR;
				break;
			}
			ps->tree[i] = f->f_path;
			path_get(&ps->tree[i]);
			ps->nr++;
			fput(f);
		}
		if (ret) {
			pset_free(ps);
			return ret;
		}
	}
	mutex_lock(&pset_lock);
	old = rcu_replace_pointer(pset, ps, lockdep_is_held(&pset_lock));
	mutex_unlock(&pset_lock);
	lxbsm_hooks_arm();
	synchronize_rcu();
	pset_free(old);
	if (!ps)
		mwatch_drop_all();
	return 0;
}

long lxbsm_protect_status(void __user *arg)
{
	struct lxbsm_protect_status st = { 0 };
	struct pset *ps;

	rcu_read_lock();
	ps = rcu_dereference(pset);
	st.nr_trees = ps ? ps->nr : 0;
	rcu_read_unlock();
	st.records = atomic64_read(&n_records);
	st.bytes = atomic64_read(&n_bytes);
	st.lost = atomic64_read(&n_lost);
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

/* Has @d one of the trees among its ancestors (or is it one)?  Under RCU. */
static bool walk_up(const struct pset *ps, const struct dentry *d)
{
	unsigned int i, depth;

	for (depth = 0; depth < PATH_MAX / 2; depth++) {
		const struct dentry *up;

		for (i = 0; i < ps->nr; i++)
			if (d == ps->tree[i].dentry)
				return true;
		up = READ_ONCE(d->d_parent);
		if (up == d)
			return false;
		d = up;
	}
	return true;		/* a loop torn by renames: undecided */
}

/* Any context: is @d below a protected tree? */
static bool in_tree(const struct dentry *d)
{
	seqcount_t *rs = &rename_lock.seqcount.seqcount;
	const struct pset *ps;
	bool hit = false, same_sb = false;
	unsigned int i, seq;
	int tries;

	if (!d)
		return false;
	rcu_read_lock();
	ps = rcu_dereference(pset);
	if (!ps)
		goto out;
	for (i = 0; i < ps->nr; i++)
		if (ps->tree[i].dentry->d_sb == d->d_sb)
			same_sb = true;
	if (!same_sb)
		goto out;
	for (tries = 0; tries < 4; tries++) {
		seq = raw_seqcount_begin(rs);	/* odd: the retry below fails */
		hit = walk_up(ps, d);
		if (!read_seqcount_retry(rs, seq))
			goto out;
		cpu_relax();
	}
	hit = true;		/* undecided: captured */
out:
	rcu_read_unlock();
	return hit;
}

/* ---- what made the change ---- */

enum pj_call {
	C_WRITE, C_PWRITE64, C_WRITEV, C_PWRITEV, C_PWRITEV2, C_COPY_FILE_RANGE,
	C_SPLICE, C_SENDFILE, C_IO_URING, C_TRUNCATE, C_FTRUNCATE, C_OPEN_TRUNC,
	C_FALLOCATE, C_MMAP, C_UNLINK, C_RENAME, C_LINK, C_CHMOD, C_CHOWN,
	C_CREATE,
};

static const char *const call_names[] = {
	[C_WRITE] = "write", [C_PWRITE64] = "pwrite64", [C_WRITEV] = "writev",
	[C_PWRITEV] = "pwritev", [C_PWRITEV2] = "pwritev2",
	[C_COPY_FILE_RANGE] = "copy_file_range", [C_SPLICE] = "splice",
	[C_SENDFILE] = "sendfile", [C_IO_URING] = "io_uring",
	[C_TRUNCATE] = "truncate", [C_FTRUNCATE] = "ftruncate",
	[C_OPEN_TRUNC] = "open O_TRUNC", [C_FALLOCATE] = "fallocate",
	[C_MMAP] = "mmap", [C_UNLINK] = "unlink", [C_RENAME] = "rename",
	[C_LINK] = "link", [C_CHMOD] = "chmod", [C_CHOWN] = "chown",
	[C_CREATE] = "create",
};

/* The call in progress, as one of the names above; @dflt if not one of them. */
static enum pj_call call_now(enum pj_call dflt)
{
	long nr;

	if (lxbsm_in_io_uring())
		return C_IO_URING;
	if (in_compat_syscall())
		return dflt;
	nr = syscall_get_nr(current, task_pt_regs(current)) & ~(long)__X32_SYSCALL_BIT;
	switch (nr) {
	case __NR_write:
		return C_WRITE;
	case __NR_pwrite64:
		return C_PWRITE64;
	case __NR_writev:
		return C_WRITEV;
	case __NR_pwritev:
		return C_PWRITEV;
	case __NR_pwritev2:
		return C_PWRITEV2;
	case __NR_copy_file_range:
		return C_COPY_FILE_RANGE;
	case __NR_splice:
		return C_SPLICE;
	case __NR_sendfile:
		return C_SENDFILE;
	case __NR_truncate:
		return C_TRUNCATE;
	case __NR_ftruncate:
		return C_FTRUNCATE;
	case __NR_open:
	case __NR_openat:
	case __NR_openat2:
	case __NR_creat:
		return C_OPEN_TRUNC;
	default:
		return dflt;
	}
}

/* ---- work items: from the handler to the task's work ---- */

struct mwatch;

enum pj_op { PJ_DATA, PJ_FALLOC, PJ_TRUNC, PJ_UNLINK, PJ_RENAME, PJ_LINK, PJ_CREATE, PJ_META };

struct pj {
	struct callback_head cb;
	struct lxbsm_pool *pool;
	u8 op;				/* enum pj_op */
	u8 call;			/* enum pj_call */
	bool append;			/* PJ_DATA: O_APPEND */
	bool in_old, in_new;		/* PJ_RENAME, PJ_LINK: which name is in a tree */
	bool exchange;			/* PJ_RENAME: RENAME_EXCHANGE */
	int mode;			/* PJ_FALLOC */
	struct file *file;		/* a reference: data, ftruncate */
	struct inode *inode;		/* a reference: the path operations */
	loff_t pos;
	loff_t count;
	loff_t size;			/* the size before the call */
	struct mwatch *watch;		/* mwatch_work() */
	struct lxbsm_attr attr;		/* before the call (PJ_UNLINK) */
	char *path;			/* in buf (path operations) */
	char *path2;
	char buf[];
};

/*
 * Items come from pools (pool.h): a short one for each write (~150 bytes,
 * 256 of them), a long one with room for two paths for each path
 * operation (8 KiB, 32).  Each is held only from the call to its return
 * to user space.  Without one, the change is a JLOST record at once.
 */
#define PJ_LONG		(2 * PATH_MAX)
LXBSM_POOL_DEFINE(lxbsm_pj_pool, "protected change", sizeof(struct pj), 256);
LXBSM_POOL_DEFINE(lxbsm_pj_long_pool, "protected path change", sizeof(struct pj) + PJ_LONG, 32);

static struct pj *pj_get(bool paths)
{
	struct lxbsm_pool *pool = paths ? &lxbsm_pj_long_pool : &lxbsm_pj_pool;
	struct pj *j = lxbsm_pool_get(pool);

	if (!j)
		return NULL;
	memset(j, 0, sizeof(*j));
	j->pool = pool;
	if (paths) {
		j->path = j->buf;
		j->path2 = j->buf + PATH_MAX;
		j->path[0] = '\0';
		j->path2[0] = '\0';
	}
	return j;
}

/* Any context. */
static void pj_put(struct pj *j)
{
	lxbsm_pool_put(j->pool, j);
}

/* Process context: drop what the item holds, and the item. */
static void pj_release(struct pj *j)
{
	if (j->file)
		fput(j->file);
	if (j->inode)
		iput(j->inode);
	pj_put(j);
}

/* ---- records (process context) ---- */

struct jrec {
	enum lxbsm_event ev;
	const char *path;
	const char *path2;
	u64 start, end, size;
	const struct lxbsm_attr *attr;
	const void *data;
	u32 len;
	const char *text;
};

/* Build @e; NULL if there is no memory. */
static struct lxbsm_rec *jrec_build(const struct jrec *e)
{
	struct lxbsm_rec *r = lxbsm_rec_new(e->ev);

	if (!r)
		return NULL;
	if (e->ev == LXBSM_EV_JWRITE || e->ev == LXBSM_EV_JLOST) {
		lxbsm_tok_arg64(r, 1, e->start, "start");
		lxbsm_tok_arg64(r, 2, e->end, "end");
	}
	lxbsm_tok_arg64(r, 3, e->size, "size");
	lxbsm_tok_path(r, e->path);
	if (e->path2)
		lxbsm_tok_path(r, e->path2);
	if (e->attr)
		lxbsm_tok_attr32(r, e->attr);
	if (e->ev == LXBSM_EV_JWRITE)
		lxbsm_tok_opaque(r, e->data, e->len);
	lxbsm_tok_text(r, e->text);
	return r;
}

/*
 * JLOST records that found no room either are kept, with who made the
 * change, and go in before the next journal record that finds room: the
 * trail names the file after all.  Beyond LOST_KEPT of them, or at unload,
 * they are counted losses (AUE_LXBSM_LOST).  Process context only.
 */
struct lost_kept {
	struct list_head node;
	struct lxbsm_proc_snap snap;
	const struct cred *cred;
	pid_t pid;
	u64 start, end, size;
	const char *text;		/* a static string */
	char path[];
};

#define LOST_KEPT	256
static LIST_HEAD(lost_kept);
static DEFINE_MUTEX(lost_lock);
static unsigned int lost_nr;		/* under lost_lock; read racily */

static void lost_keep(const struct jrec *e, const struct lxbsm_proc_snap *snap)
{
	struct lost_kept *k = NULL;

	mutex_lock(&lost_lock);
	if (lost_nr < LOST_KEPT)
		k = kmalloc(sizeof(*k) + strlen(e->path) + 1, GFP_KERNEL);
	if (k) {
		k->snap = *snap;
		k->cred = get_current_cred();
		k->pid = task_tgid_nr(current);
		k->start = e->start;
		k->end = e->end;
		k->size = e->size;
		k->text = e->text;
		strcpy(k->path, e->path);
		list_add_tail(&k->node, &lost_kept);
		lost_nr++;
	}
	mutex_unlock(&lost_lock);
	if (!k)
		lxbsm_lost(LXBSM_LOST_RING_FULL);
}

static void lost_kept_free(struct lost_kept *k)
{
	list_del(&k->node);
	lost_nr--;
	put_cred(k->cred);
	kfree(k);
}

/* Put in what was kept, waiting up to @wait_ms for room; false if some is left. */
static bool lost_kept_flush(unsigned int wait_ms)
{
	struct lost_kept *k, *t;
	bool all = true;

	if (!READ_ONCE(lost_nr))
		return true;
	mutex_lock(&lost_lock);
	list_for_each_entry_safe(k, t, &lost_kept, node) {
		struct jrec e = {
			.ev = LXBSM_EV_JLOST, .path = k->path, .start = k->start, .end = k->end,
			.size = k->size, .text = k->text,
		};
		struct lxbsm_rec *r = jrec_build(&e);

		if (!r || lxbsm_rec_finish_wait_as(r, &k->snap, 0, wait_ms, k->cred, k->pid)) {
			all = false;
			break;
		}
		atomic64_inc(&n_records);
		lost_kept_free(k);
	}
	mutex_unlock(&lost_lock);
	return all;
}

static int jrec_emit(const struct jrec *e, const struct lxbsm_proc_snap *snap)
{
	struct lxbsm_rec *r;
	int err;

	/* What was lost before goes in first, or the order would lie. */
	if (!lost_kept_flush(protect_wait_ms))
		return -ENOSPC;
	r = jrec_build(e);
	if (!r)
		return -ENOMEM;
	err = lxbsm_rec_finish_wait(r, snap, 0, protect_wait_ms);
	if (!err) {
		atomic64_inc(&n_records);
		atomic64_add(e->len, &n_bytes);
	}
	return err;
}

static const char *lost_reason(int err)
{
	switch (err) {
	case -ENOSPC:
		return "not captured: ring full";
	case -ENOMEM:
		return "not captured: no memory";
	case -E2BIG:
		return "not captured: record too big";
	case -ESRCH:
		return "not captured: task exiting";
	default:
		return "not captured: read failed";
	}
}

/* Process context: the change to @path in [@start, @end) is lost; say so. */
static void lost_range(const char *path, u64 start, u64 end, u64 size, int err,
		       const struct lxbsm_proc_snap *snap)
{
	struct jrec e = {
		.ev = LXBSM_EV_JLOST, .path = path, .start = start, .end = end,
		.size = size, .text = lost_reason(err),
	};

	atomic64_inc(&n_lost);
	/* The name is the record's: a user's name is not for the kernel log. */
	pr_warn_ratelimited("a change to a protected file was not captured (%d): see its JLOST record\n",
			    err);
	if (jrec_emit(&e, snap))
		lost_keep(&e, snap);
}

/* Emit @e; if it cannot go in, a JLOST for it.  0 if it went in. */
static int jrec_emit_or_lost(const struct jrec *e, const struct lxbsm_proc_snap *snap)
{
	int err = jrec_emit(e, snap);

	if (err)
		lost_range(e->path, e->start, e->end, e->size, err, snap);
	return err;
}

#define CHUNK	LXBSM_PROTECT_CHUNK

/*
 * The bytes [@start, @end) of @rd's file hold now, clipped to its size, as
 * JWRITE records of at most CHUNK bytes each.
 */
static void capture_data(struct file *rd, const char *path, loff_t start, loff_t end,
			 enum pj_call call, const struct lxbsm_proc_snap *snap)
{
	struct inode *inode = file_inode(rd);
	struct lxbsm_attr attr;
	loff_t pos = start, size;
	void *buf;
	int err;

	lxbsm_attr_of(inode, &attr);
	size = i_size_read(inode);
	if (end > size)
		end = size;
	if (pos >= end)
		return;
	buf = kvmalloc(CHUNK, GFP_KERNEL);
	if (!buf) {
		lost_range(path, pos, end, size, -ENOMEM, snap);
		return;
	}
	while (pos < end) {
		loff_t at = pos;
		ssize_t got = kernel_read(rd, buf, min_t(loff_t, CHUNK, end - pos), &at);
		struct jrec e = {
			.ev = LXBSM_EV_JWRITE, .path = path, .start = pos,
			.end = pos + max_t(ssize_t, got, 0), .size = i_size_read(inode),
			.attr = &attr, .data = buf, .len = max_t(ssize_t, got, 0),
			.text = call_names[call],
		};

		if (got <= 0) {
			/* 0: the file shrank meanwhile, and that truncation has its own record */
			if (got < 0)
				lost_range(path, pos, end, size, (int)got, snap);
			break;
		}
		err = jrec_emit(&e, snap);
		if (err) {
			/* the rest of the range too: one loss, not one wait per piece */
			lost_range(path, pos, end, e.size, err, snap);
			break;
		}
		pos += got;
		cond_resched();
	}
	kvfree(buf);
}

/*
 * A file to read @f's content with: @f itself if it is open for reading
 * (and not for direct I/O, whose alignment rules a plain read does not keep).
 */
static struct file *reader_of(struct file *f)
{
	if (f->f_mode & FMODE_READ && !(f->f_flags & O_DIRECT))
		return get_file(f);
	return dentry_open(&f->f_path, O_RDONLY | O_LARGEFILE, current_cred());
}

/* The whole file now at @path (its own record of creation, then its data). */
static void capture_whole_at(const char *path, enum pj_call call,
			     const struct lxbsm_proc_snap *snap)
{
	struct lxbsm_attr attr;
	struct path p;
	struct file *rd;
	struct jrec e = { .ev = LXBSM_EV_JCREATE, .path = path, .attr = &attr,
			  .text = call_names[call] };

	if (kern_path(path, 0, &p))
		return;		/* gone already: its removal has its own record */
	if (!d_is_reg(p.dentry)) {
		path_put(&p);
		return;
	}
	rd = dentry_open(&p, O_RDONLY | O_LARGEFILE, current_cred());
	path_put(&p);
	if (IS_ERR(rd)) {
		lost_range(path, 0, 0, 0, (int)PTR_ERR(rd), snap);
		return;
	}
	lxbsm_attr_of(file_inode(rd), &attr);
	e.size = i_size_read(file_inode(rd));
	if (!jrec_emit_or_lost(&e, snap))
		capture_data(rd, path, 0, e.size, call, snap);
	fput(rd);
}

/* Does @path name @inode now? */
static bool names(const char *path, const struct inode *inode)
{
	struct path p;
	bool same;

	if (kern_path(path, 0, &p))
		return false;
	same = d_inode(p.dentry) == inode;
	path_put(&p);
	return same;
}

static void pj_data(struct pj *j, const struct lxbsm_proc_snap *snap)
{
	struct inode *inode = file_inode(j->file);
	loff_t start = j->pos, end, size = i_size_read(inode);
	struct file *rd;
	char *buf, *path;

	if (j->append) {
		start = j->size;
		end = size;
	} else if (j->op == PJ_FALLOC && j->mode & (FALLOC_FL_COLLAPSE_RANGE |
						      FALLOC_FL_INSERT_RANGE)) {
		end = size;		/* what follows moved */
	} else {
		end = j->count > size - start ? size : start + j->count;
	}
	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf) {
		atomic64_inc(&n_lost);
		lxbsm_lost(LXBSM_LOST_NO_SCRATCH);
		return;
	}
	path = d_path(&j->file->f_path, buf, PATH_MAX);
	if (IS_ERR(path)) {
		lost_range("", start, end, size, (int)PTR_ERR(path), snap);
		goto out;
	}
	if (j->op == PJ_FALLOC && !(j->mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
					       FALLOC_FL_COLLAPSE_RANGE |
					       FALLOC_FL_INSERT_RANGE))) {
		/* Space only: the file may be longer, with zeros. */
		struct lxbsm_attr attr;
		struct jrec e = { .ev = LXBSM_EV_JTRUNCATE, .path = path, .size = size,
				  .attr = &attr, .text = call_names[j->call] };

		lxbsm_attr_of(inode, &attr);
		jrec_emit_or_lost(&e, snap);
		goto out;
	}
	rd = reader_of(j->file);
	if (IS_ERR(rd)) {
		lost_range(path, start, end, size, (int)PTR_ERR(rd), snap);
		goto out;
	}
	capture_data(rd, path, start, end, j->call, snap);
	fput(rd);
out:
	kfree(buf);
}

static void pj_trunc(struct pj *j, const struct lxbsm_proc_snap *snap)
{
	struct inode *inode = j->file ? file_inode(j->file) : j->inode;
	struct lxbsm_attr attr;
	struct jrec e = { .ev = LXBSM_EV_JTRUNCATE, .path = j->path, .attr = &attr,
			  .text = call_names[j->call] };
	char *buf = NULL;

	if (j->file) {
		buf = kmalloc(PATH_MAX, GFP_KERNEL);
		e.path = buf ? d_path(&j->file->f_path, buf, PATH_MAX) : ERR_PTR(-ENOMEM);
		if (IS_ERR(e.path)) {
			lost_range("", 0, 0, 0, (int)PTR_ERR(e.path), snap);
			kfree(buf);
			return;
		}
	}
	lxbsm_attr_of(inode, &attr);
	e.size = i_size_read(inode);
	jrec_emit_or_lost(&e, snap);
	kfree(buf);
}

static void pj_path_op(struct pj *j, const struct lxbsm_proc_snap *snap)
{
	struct lxbsm_attr attr;
	struct jrec e = { .path = j->path, .attr = &attr, .text = call_names[j->call] };

	switch (j->op) {
	case PJ_UNLINK:
		if (names(j->path, j->inode))
			return;		/* it failed */
		e.ev = LXBSM_EV_JUNLINK;
		e.attr = &j->attr;
		e.size = j->size;
		break;
	case PJ_CREATE:
		capture_whole_at(j->path, C_CREATE, snap);
		return;
	case PJ_META:
		e.ev = LXBSM_EV_JMETA;
		lxbsm_attr_of(j->inode, &attr);
		e.size = i_size_read(j->inode);
		break;
	case PJ_RENAME:
	case PJ_LINK:
		if (!names(j->path2, j->inode))
			return;		/* it failed */
		if (j->exchange) {
			/* Each name holds the other's file now: both, whole. */
			if (j->in_old)
				capture_whole_at(j->path, j->call, snap);
			if (j->in_new)
				capture_whole_at(j->path2, j->call, snap);
			return;
		}
		if (!j->in_old) {	/* into a tree: a new file there */
			capture_whole_at(j->path2, j->call, snap);
			return;
		}
		if (!j->in_new) {	/* out of the trees: gone from them */
			if (j->op == PJ_LINK)
				return;
			e.ev = LXBSM_EV_JUNLINK;
			e.attr = &j->attr;
			e.size = j->size;
			break;
		}
		e.ev = j->op == PJ_RENAME ? LXBSM_EV_JRENAME : LXBSM_EV_JLINK;
		e.path2 = j->path2;
		lxbsm_attr_of(j->inode, &attr);
		e.size = i_size_read(j->inode);
		break;
	default:
		return;
	}
	jrec_emit_or_lost(&e, snap);
}

static void pj_work(struct callback_head *cb)
{
	struct pj *j = container_of(cb, struct pj, cb);
	struct lxbsm_proc_snap snap;

	lxbsm_proc_snapshot(current, &snap);
	if (!current->fs) {	/* run by the exit after all: no root to name files from */
		lost_range(j->path ? j->path : "", j->pos, j->pos + j->count, j->size, -ESRCH,
			   &snap);
		goto out;
	}
	switch (j->op) {
	case PJ_DATA:
	case PJ_FALLOC:
		pj_data(j, &snap);
		break;
	case PJ_TRUNC:
		pj_trunc(j, &snap);
		break;
	default:
		pj_path_op(j, &snap);
		break;
	}
out:
	pj_release(j);
	lxbsm_later_done(false);
}

/* ---- handlers (any context: preemption off, no sleeping, no faults) ---- */

/*
 * Who is not captured: the daemon itself.  A kernel thread's change (nfsd,
 * 5.10's io_uring workers) cannot be read in a task's work: it is a JLOST.
 */
static bool skip_current(void)
{
	return lxbsm_current_is_consumer();
}

/*
 * A change a handler cannot hand on: its JLOST record now, from the
 * handler (the path from @p, or @text if there is none), saying @why.
 */
static void lost_why(const struct path *p, const char *text, u64 start, u64 end,
		     const char *why)
{
	struct lxbsm_proc_snap snap;
	struct lxbsm_rec *r;
	const char *path = text;

	atomic64_inc(&n_lost);
	lxbsm_proc_snapshot(current, &snap);
	r = lxbsm_rec_begin(LXBSM_EV_JLOST);
	if (!r)
		return;
	if (p) {
		char *s = lxbsm_d_path(p, lxbsm_rec_pathbuf(r, 0), LXBSM_PATH_MAX);

		path = IS_ERR(s) ? text : s;
	}
	lxbsm_tok_arg64(r, 1, start, "start");
	lxbsm_tok_arg64(r, 2, end, "end");
	lxbsm_tok_arg64(r, 3, 0, "size");
	lxbsm_tok_path(r, path);
	lxbsm_tok_text(r, why);
	lxbsm_rec_finish(r, &snap, 0);
}

static void lost_now(const struct path *p, const char *text, u64 start, u64 end)
{
	const char *why = "not captured: no work item";

	if (current->flags & PF_EXITING)
		why = "not captured: task exiting";
	else if (current->flags & PF_KTHREAD)
		why = "not captured: kernel thread";
	lost_why(p, text, start, end, why);
}

/*
 * Hand @j to the task's work, with references to @f and @inode; if it
 * cannot be, a JLOST now (named by @p, or j->path) and @j goes back.  The
 * references are taken once it is queued: the work runs on the task's way
 * back to user space, never before the handler returns, and a handler must
 * not drop what may be a last reference (iput() may sleep).
 */
static void pj_queue(struct pj *j, struct file *f, struct inode *inode, const struct path *p)
{
	if (!lxbsm_later(&j->cb, pj_work)) {
		lost_now(p, j->path ? j->path : "", j->pos, j->pos + j->count);
		pj_put(j);
		return;
	}
	if (f)
		j->file = get_file(f);
	if (inode) {
		ihold(inode);
		j->inode = inode;
	}
}

/*
 * A regular file below a tree, opened as itself.  Not a stacked
 * filesystem's file on the layer below (overlayfs opens its upper file
 * with the overlay's path): the overlay's own file has its record already.
 */
static bool reg_in_tree(const struct file *f)
{
	return f && S_ISREG(file_inode(f)->i_mode) &&
	       file_inode(f)->i_sb == f->f_path.dentry->d_sb && in_tree(f->f_path.dentry);
}

/* rw_verify_area(int read_write, struct file *, const loff_t *ppos, size_t count) */
int lxbsm_protect_rw_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 1);
	const loff_t *ppos = (const loff_t *)regs_get_kernel_argument(regs, 2);
	struct pj *j;

	if (regs_get_kernel_argument(regs, 0) != WRITE || skip_current() || !reg_in_tree(f))
		return 0;
	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(false);
	if (!j) {
		loff_t pos = ppos ? *ppos : f->f_pos;

		lost_now(&f->f_path, "", pos, pos + regs_get_kernel_argument(regs, 3));
		return 0;
	}
	j->op = PJ_DATA;
	j->call = call_now(C_WRITE);
	j->pos = ppos ? *ppos : f->f_pos;
	j->count = (loff_t)regs_get_kernel_argument(regs, 3);
	j->append = f->f_flags & O_APPEND;
	j->size = i_size_read(file_inode(f));
	pj_queue(j, f, NULL, &f->f_path);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_rw_pre);

/* vfs_fallocate(struct file *, int mode, loff_t offset, loff_t len) */
int lxbsm_protect_falloc_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 0);
	struct pj *j;

	if (skip_current() || !reg_in_tree(f) || !(f->f_mode & FMODE_WRITE))
		return 0;
	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(false);
	if (!j) {
		lost_now(&f->f_path, "", 0, 0);
		return 0;
	}
	j->op = PJ_FALLOC;
	j->call = C_FALLOCATE;
	j->mode = (int)regs_get_kernel_argument(regs, 1);
	j->pos = (loff_t)regs_get_kernel_argument(regs, 2);
	j->count = (loff_t)regs_get_kernel_argument(regs, 3);
	j->size = i_size_read(file_inode(f));
	pj_queue(j, f, NULL, &f->f_path);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_falloc_pre);

/* security_file_truncate(struct file *) */
int lxbsm_protect_ftrunc_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 0);
	struct pj *j;

	if (skip_current() || !reg_in_tree(f))
		return 0;
	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(false);
	if (!j) {
		lost_now(&f->f_path, "", 0, 0);
		return 0;
	}
	j->op = PJ_TRUNC;
	j->call = call_now(C_FTRUNCATE);
	pj_queue(j, f, NULL, &f->f_path);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_ftrunc_pre);

/*
 * "DIR/NAME" into @buf (@size bytes) for a name in a directory whose inode
 * the caller holds locked, so that the name is stable.  False if it cannot
 * be made without waiting, or does not fit.
 */
static bool dir_name_in(char *buf, int size, const struct path *dir, const struct dentry *d)
{
	unsigned int len = READ_ONCE(d->d_name.len);
	char *s = lxbsm_d_path(dir, buf, size);
	size_t n;

	if (IS_ERR(s))
		return false;
	n = strlen(s);
	if (n == 1)		/* "/" */
		n = 0;
	if (n + 1 + len + 1 > size)
		return false;
	memmove(buf, s, n);
	buf[n] = '/';
	memcpy(buf + n + 1, d->d_name.name, len);
	buf[n + 1 + len] = '\0';
	return true;
}

static bool dir_name(char *buf, const struct path *dir, const struct dentry *d)
{
	return dir_name_in(buf, PATH_MAX, dir, d);
}

/* The start of a path operation on @inode (NULL: a creation); NULL if no item. */
static struct pj *path_op(struct kprobe *p, enum pj_op op, enum pj_call call,
			  const struct inode *inode)
{
	struct pj *j;

	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(true);
	if (!j)
		return NULL;
	j->op = op;
	j->call = call;
	if (inode) {
		lxbsm_attr_of(inode, &j->attr);
		j->size = i_size_read(inode);
	}
	return j;
}

/*
 * An operation on the protected file at @path (truncate, chmod, chown),
 * named by its whole path; @call is refined by the syscall in progress.
 */
static int whole_path_pre(struct kprobe *p, const struct path *path, enum pj_op op,
			  enum pj_call call)
{
	struct inode *inode = d_inode(path->dentry);
	struct pj *j;
	char *s;

	if (skip_current() || !inode || !S_ISREG(inode->i_mode) || !in_tree(path->dentry))
		return 0;
	j = path_op(p, op, call_now(call), inode);
	s = j ? lxbsm_d_path(path, j->path, PATH_MAX) : ERR_PTR(-ENOMEM);
	if (IS_ERR(s)) {
		if (j)
			pj_put(j);
		lost_now(path, "", 0, 0);
		return 0;
	}
	j->path = s;		/* at the end of its buffer */
	pj_queue(j, NULL, inode, path);
	return 0;
}

/* security_path_truncate(const struct path *) */
int lxbsm_protect_trunc_pre(struct kprobe *p, struct pt_regs *regs)
{
	return whole_path_pre(p, (const struct path *)regs_get_kernel_argument(regs, 0),
			      PJ_TRUNC, C_TRUNCATE);
}
NOKPROBE_SYMBOL(lxbsm_protect_trunc_pre);

/* A path operation that could not be noted: its JLOST, named by @dir/@d. */
static void path_op_lost(struct pj *j, const struct path *dir, const struct dentry *d)
{
	char *buf = lxbsm_hook_pathbuf_get();

	if (j)
		pj_put(j);
	if (buf && dir_name(buf, dir, d))
		lost_now(NULL, buf, 0, 0);
	else
		lost_now(dir, "", 0, 0);
	if (buf)
		lxbsm_hook_pathbuf_put(buf);
}

/*
 * path_op() for an operation on the name @d in @dir, that name written to
 * @j->path (@second: to @j->path2); NULL, its JLOST made, if it cannot be.
 */
static struct pj *named_op(struct kprobe *p, enum pj_op op, enum pj_call call,
			   const struct inode *inode, bool second, const struct path *dir,
			   const struct dentry *d)
{
	struct pj *j = path_op(p, op, call, inode);

	if (!j || !dir_name(second ? j->path2 : j->path, dir, d)) {
		path_op_lost(j, dir, d);
		return NULL;
	}
	return j;
}

/* security_path_unlink(const struct path *dir, struct dentry *) */
int lxbsm_protect_unlink_pre(struct kprobe *p, struct pt_regs *regs)
{
	const struct path *dir = (const struct path *)regs_get_kernel_argument(regs, 0);
	struct dentry *d = (struct dentry *)regs_get_kernel_argument(regs, 1);
	struct inode *inode = d_inode(d);
	struct pj *j;

	if (skip_current() || !inode || !S_ISREG(inode->i_mode) || !in_tree(dir->dentry))
		return 0;
	j = named_op(p, PJ_UNLINK, C_UNLINK, inode, false, dir, d);
	if (j)
		pj_queue(j, NULL, inode, NULL);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_unlink_pre);

/*
 * security_path_rename(const struct path *old_dir, struct dentry *old,
 * const struct path *new_dir, struct dentry *new, unsigned int flags)
 */
int lxbsm_protect_rename_pre(struct kprobe *p, struct pt_regs *regs)
{
	const struct path *odir = (const struct path *)regs_get_kernel_argument(regs, 0);
	struct dentry *od = (struct dentry *)regs_get_kernel_argument(regs, 1);
	const struct path *ndir = (const struct path *)regs_get_kernel_argument(regs, 2);
	struct dentry *nd = (struct dentry *)regs_get_kernel_argument(regs, 3);
	unsigned int flags = (unsigned int)regs_get_kernel_argument(regs, 4);
	struct inode *inode = d_inode(od);
	bool in_old, in_new;
	struct pj *j;

	if (skip_current() || !inode)
		return 0;
	in_old = in_tree(odir->dentry);
	in_new = in_tree(ndir->dentry);
	if (!in_old && !in_new)
		return 0;
	if (!S_ISREG(inode->i_mode)) {
		/* A directory: the files below it move too, which is not followed. */
		if (S_ISDIR(inode->i_mode))
			lost_why(odir, "", 0, 0, "not captured: directory renamed");
		return 0;
	}
	j = named_op(p, PJ_RENAME, C_RENAME, inode, false, odir, od);
	if (!j)
		return 0;
	if (!dir_name(j->path2, ndir, nd)) {
		path_op_lost(j, odir, od);
		return 0;
	}
	j->in_old = in_old;
	j->in_new = in_new;
	j->exchange = flags & RENAME_EXCHANGE;
	pj_queue(j, NULL, inode, NULL);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_rename_pre);

/*
 * A protected file gets a name outside the trees: what is written through
 * that name is not seen (the walk finds no tree above it), so the file's
 * journal is incomplete from here on, and a JLOST says so, with the name.
 */
static void linked_out(struct kprobe *p, const struct path *old, const struct path *ndir,
		       const struct dentry *nd)
{
	static const char pre[] = "not captured from here on: linked outside the trees as ";
	char *buf = lxbsm_hook_pathbuf_get();

	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	if (buf) {
		memcpy(buf, pre, sizeof(pre) - 1);
		if (!dir_name_in(buf + sizeof(pre) - 1, PATH_MAX - sizeof(pre) + 1, ndir, nd))
			strscpy(buf + sizeof(pre) - 1, "?", 2);
	}
	lost_why(old, "", 0, 0, buf ? buf : "not captured from here on: linked outside the trees");
	if (buf)
		lxbsm_hook_pathbuf_put(buf);
}

/* security_path_link(struct dentry *old, const struct path *new_dir, struct dentry *new) */
int lxbsm_protect_link_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct dentry *od = (struct dentry *)regs_get_kernel_argument(regs, 0);
	const struct path *ndir = (const struct path *)regs_get_kernel_argument(regs, 1);
	struct dentry *nd = (struct dentry *)regs_get_kernel_argument(regs, 2);
	struct inode *inode = d_inode(od);
	struct path op;
	struct pj *j;

	if (skip_current() || !inode || !S_ISREG(inode->i_mode))
		return 0;
	op.mnt = ndir->mnt;	/* a link stays on one mount */
	op.dentry = od;
	if (!in_tree(ndir->dentry)) {
		if (!d_unlinked(od) && in_tree(od))
			linked_out(p, &op, ndir, nd);
		return 0;
	}
	j = named_op(p, PJ_LINK, C_LINK, inode, true, ndir, nd);
	if (!j)
		return 0;
	/* An O_TMPFILE file or one from outside: new in the tree, read whole. */
	j->in_old = !d_unlinked(od) && in_tree(od);
	if (j->in_old) {
		char *s = lxbsm_d_path(&op, j->path, PATH_MAX);

		if (IS_ERR(s)) {
			path_op_lost(j, ndir, nd);
			return 0;
		}
		j->path = s;
	}
	j->in_new = true;
	pj_queue(j, NULL, inode, NULL);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_link_pre);

/* security_path_mknod(const struct path *dir, struct dentry *, umode_t mode, unsigned int dev) */
int lxbsm_protect_mknod_pre(struct kprobe *p, struct pt_regs *regs)
{
	const struct path *dir = (const struct path *)regs_get_kernel_argument(regs, 0);
	struct dentry *d = (struct dentry *)regs_get_kernel_argument(regs, 1);
	umode_t mode = (umode_t)regs_get_kernel_argument(regs, 2);
	struct pj *j;

	if (skip_current() || (mode & S_IFMT && !S_ISREG(mode)) || !in_tree(dir->dentry))
		return 0;
	j = named_op(p, PJ_CREATE, C_CREATE, NULL, false, dir, d);
	if (j)
		pj_queue(j, NULL, NULL, NULL);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_mknod_pre);

/* security_path_chmod(const struct path *, umode_t) */
int lxbsm_protect_chmod_pre(struct kprobe *p, struct pt_regs *regs)
{
	return whole_path_pre(p, (const struct path *)regs_get_kernel_argument(regs, 0),
			      PJ_META, C_CHMOD);
}
NOKPROBE_SYMBOL(lxbsm_protect_chmod_pre);

/* security_path_chown(const struct path *, kuid_t, kgid_t) */
int lxbsm_protect_chown_pre(struct kprobe *p, struct pt_regs *regs)
{
	return whole_path_pre(p, (const struct path *)regs_get_kernel_argument(regs, 0),
			      PJ_META, C_CHOWN);
}
NOKPROBE_SYMBOL(lxbsm_protect_chown_pre);

/*
 * ---- shared writable mappings ----
 *
 * Stores through a shared writable mapping reach the file without a call
 * the module sees.  When such a mapping of a protected file is made, the
 * task's work opens the file again for reading and notes the mapped file;
 * when the mapped file's last reference goes (security_file_free, from
 * __fput: the last close or munmap, whichever is later, or the exit), the
 * file is read whole into JWRITE records ("mmap").  Whole, because the
 * dirty pages are not known without walking the page cache; at that
 * moment, because before it the mapping may still change the file.  An
 * msync() is therefore not a capture point: only the state after the last
 * store is, and that is what is recorded.
 */
struct mwatch {
	struct list_head node;
	const struct file *key;		/* the mapped file (no reference) */
	struct file *rd;		/* ours, to read it */
	struct lxbsm_proc_snap snap;	/* who mapped it */
	struct llist_node dead;
	char path[];
};

#define MWATCH_MAX	1024
static LIST_HEAD(mwatches);
static DEFINE_RAW_SPINLOCK(mwatch_lock);
static unsigned int mwatch_nr;		/* under mwatch_lock; read racily */
static LLIST_HEAD(mwatch_dead);		/* handed back from handlers */

/* Process context: free watches handed back by handlers. */
static void mwatch_reap(void)
{
	struct llist_node *n = llist_del_all(&mwatch_dead);
	struct mwatch *w, *t;

	llist_for_each_entry_safe(w, t, n, dead) {
		fput(w->rd);
		kfree(w);
	}
}

static void mwatch_add(struct file *f, const struct lxbsm_proc_snap *snap)
{
	struct mwatch *w, *old;
	unsigned long flags;
	bool known = false, full;
	char *buf, *s;

	mwatch_reap();
	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf) {
		lost_range("", 0, 0, 0, -ENOMEM, snap);
		return;
	}
	s = d_path(&f->f_path, buf, PATH_MAX);
	if (IS_ERR(s)) {
		lost_range("", 0, 0, 0, (int)PTR_ERR(s), snap);
		kfree(buf);
		return;
	}
	w = kmalloc(sizeof(*w) + strlen(s) + 1, GFP_KERNEL);
	if (!w) {
		lost_range(s, 0, 0, 0, -ENOMEM, snap);
		kfree(buf);
		return;
	}
	strcpy(w->path, s);
	kfree(buf);
	w->key = f;
	w->snap = *snap;
	w->rd = dentry_open(&f->f_path, O_RDONLY | O_LARGEFILE, current_cred());
	if (IS_ERR(w->rd)) {
		lost_range(w->path, 0, 0, 0, (int)PTR_ERR(w->rd), snap);
		kfree(w);
		return;
	}
	raw_spin_lock_irqsave(&mwatch_lock, flags);
	list_for_each_entry(old, &mwatches, node)
		if (old->key == f)
			known = true;
	full = mwatch_nr >= MWATCH_MAX;
	if (!known && !full) {
		list_add(&w->node, &mwatches);
		mwatch_nr++;
	}
	raw_spin_unlock_irqrestore(&mwatch_lock, flags);
	if (known || full) {
		if (full)
			lost_range(w->path, 0, 0, 0, -ENOMEM, snap);
		fput(w->rd);
		kfree(w);
	}
}

/* The watch of mapped file @f, taken off the list; NULL if none. */
static struct mwatch *mwatch_take(const struct file *f)
{
	struct mwatch *w, *found = NULL;
	unsigned long flags;

	if (!READ_ONCE(mwatch_nr))
		return NULL;
	raw_spin_lock_irqsave(&mwatch_lock, flags);
	list_for_each_entry(w, &mwatches, node) {
		if (w->key == f) {
			list_del(&w->node);
			mwatch_nr--;
			found = w;
			break;
		}
	}
	raw_spin_unlock_irqrestore(&mwatch_lock, flags);
	return found;
}

/* task_work of a mapping's last reference: the file, whole. */
static void mwatch_work(struct callback_head *cb)
{
	struct pj *j = container_of(cb, struct pj, cb);
	struct mwatch *w = j->watch;

	capture_data(w->rd, w->path, 0, i_size_read(file_inode(w->rd)), C_MMAP, &w->snap);
	fput(w->rd);
	kfree(w);
	pj_put(j);
	lxbsm_later_done(false);
}

/* task_work of a new shared writable mapping: watch it. */
static void mwatch_new_work(struct callback_head *cb)
{
	struct pj *j = container_of(cb, struct pj, cb);
	struct lxbsm_proc_snap snap;

	lxbsm_proc_snapshot(current, &snap);
	mwatch_add(j->file, &snap);
	pj_release(j);
	lxbsm_later_done(false);
}

/* security_mmap_file(struct file *, unsigned long prot, unsigned long flags) */
int lxbsm_protect_mmap_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 0);
	unsigned long prot = regs_get_kernel_argument(regs, 1);
	unsigned long flags = regs_get_kernel_argument(regs, 2);
	struct pj *j;

	if (!(prot & PROT_WRITE) || (flags & MAP_TYPE) == MAP_PRIVATE || skip_current() ||
	    !reg_in_tree(f))
		return 0;
	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(false);
	if (!j || !lxbsm_later(&j->cb, mwatch_new_work)) {
		if (j)
			pj_put(j);
		lost_why(&f->f_path, "", 0, 0, "not captured: shared mapping not watched");
		return 0;
	}
	j->file = get_file(f);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_mmap_pre);

/* security_file_free(struct file *): a watched file's last reference went. */
int lxbsm_protect_free_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 0);
	struct mwatch *w = mwatch_take(f);
	struct pj *j;

	if (!w)
		return 0;
	lxbsm_hook_hit(lxbsm_kprobe_hook(p));
	j = pj_get(false);
	if (j) {
		j->watch = w;
		if (lxbsm_later_exiting(&j->cb, mwatch_work))
			return 0;
		pj_put(j);
	}
	/* No task to read it in (a kernel thread let it go): say so. */
	lost_why(NULL, w->path, 0, 0, "not captured: mapping released outside a task");
	llist_add(&w->dead, &mwatch_dead);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_protect_free_pre);

/* Process context: forget every watch (protection off, unload). */
static void mwatch_drop_all(void)
{
	struct mwatch *w, *t;
	unsigned long flags;
	LIST_HEAD(gone);

	raw_spin_lock_irqsave(&mwatch_lock, flags);
	list_splice_init(&mwatches, &gone);
	mwatch_nr = 0;
	raw_spin_unlock_irqrestore(&mwatch_lock, flags);
	list_for_each_entry_safe(w, t, &gone, node) {
		fput(w->rd);
		kfree(w);
	}
	mwatch_reap();
}

/* At unload, once no handler runs and no work is left. */
void lxbsm_protect_exit(void)
{
	struct lost_kept *k, *t;
	struct pset *ps;

	list_for_each_entry_safe(k, t, &lost_kept, node) {
		lxbsm_lost(LXBSM_LOST_RING_FULL);
		lost_kept_free(k);
	}
	mwatch_drop_all();
	ps = rcu_dereference_protected(pset, true);
	RCU_INIT_POINTER(pset, NULL);
	synchronize_rcu();
	pset_free(ps);
}
