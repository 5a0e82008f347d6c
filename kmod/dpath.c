// SPDX-License-Identifier: GPL-2.0
/*
 * Paths of files for handlers: lxbsm_d_path().
 *
 * Everywhere but PREEMPT_RT this is the kernel's d_path().  d_path() walks
 * locklessly first, but when a rename or a mount change overlaps the walk
 * it walks again holding rename_lock and mount_lock (and reads the root
 * with read_seqcount_begin() on fs->seq).  Those are spinlock_t, which on
 * PREEMPT_RT are sleeping locks: a handler runs with preemption disabled,
 * so a user who renames in a loop while others exec or open would make the
 * kernel schedule while atomic ("BUG: scheduling while atomic").
 *
 * On PREEMPT_RT, then, the walk is the lockless pass alone: dentries and
 * mounts are RCU-freed and read under rcu_read_lock(), the result checked
 * against rename_lock's plain seqcount (never its lock), retried a few
 * times and otherwise given up (-EAGAIN: the caller's "no path").  The walk
 * up through mounts needs struct mount, private to fs/: its first members
 * (hash node, parent, mountpoint, then the vfsmount) have not changed since
 * 3.x, and lxbsm_d_path_selftest() checks that layout at load against
 * d_path() itself on paths that cross mounts, refusing to load if it does
 * not hold.  A mount change during the walk is not detected (mount_lock is
 * not exported): at worst such a path is a mix of before and after, as
 * seen by a process of that mount namespace, which needs CAP_SYS_ADMIN in
 * it.  Pseudo files (d_op->d_dname) are named without calling d_dname(),
 * some of which take spinlocks: as simple_dname() names them, "/NAME
 * (deleted)" (what d_path() gives a memfd), or no path if the name is empty
 * (pipes, most sockets); anonymous inodes thus lack d_path()'s
 * "anon_inode:" prefix.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dcache.h>
#include <linux/err.h>
#include <linux/fs_struct.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/seqlock.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "lxbsm.h"

#ifdef CONFIG_PREEMPT_RT

/* The start of fs/mount.h's struct mount (checked at load). */
struct lxbsm_mount {
	struct hlist_node hash;
	struct lxbsm_mount *parent;
	struct dentry *mountpoint;
	struct vfsmount mnt;
};

static struct lxbsm_mount *real_mnt(const struct vfsmount *m)
{
	return container_of(m, struct lxbsm_mount, mnt);
}

/* Tries of the walk before it gives up. */
#define WALK_TRIES	4
/* Mounts crossed in one walk, at most (a bound on a walk torn by a move). */
#define WALK_MOUNTS	256

struct pbuf {
	char *p;	/* start of what is written, at the end of the buffer */
	int room;	/* bytes left before it */
};

/*
 * @len bytes at @src, which a concurrent rename may free or change: copied
 * without faulting, the seqcount check discards a torn copy.
 */
static bool prepend(struct pbuf *b, const char *src, int len)
{
	if (len < 0 || len > b->room)
		return false;
	b->p -= len;
	b->room -= len;
	if (copy_from_kernel_nofault(b->p, src, len)) {
		memset(b->p, 'x', len);
		return false;
	}
	return true;
}

static bool prepend_dname(struct pbuf *b, const struct dentry *d)
{
	/* Acquire: a new name's bytes are seen with its pointer (d_move()). */
	const char *name = smp_load_acquire(&d->d_name.name);
	u32 len = READ_ONCE(d->d_name.len);

	return prepend(b, name, len) && prepend(b, "/", 1);
}

/* One walk of @path up to @root; false if it did not fit. */
static bool walk(const struct path *path, const struct path *root, struct pbuf *b)
{
	const struct dentry *d = path->dentry;
	struct lxbsm_mount *m = real_mnt(path->mnt);
	struct pbuf start = *b;
	int mounts = 0;

	while (d != root->dentry || &m->mnt != root->mnt) {
		const struct dentry *parent = READ_ONCE(d->d_parent);

		if (d == READ_ONCE(m->mnt.mnt_root)) {
			struct lxbsm_mount *up = READ_ONCE(m->parent);

			if (up == m)	/* the top of its tree: outside root */
				break;
			if (++mounts > WALK_MOUNTS)
				return false;
			d = READ_ONCE(m->mountpoint);
			m = up;
			continue;
		}
		if (d == parent) {	/* escaped from root: d_path says "/" */
			*b = start;
			break;
		}
		if (!prepend_dname(b, d))
			return false;
		d = parent;
	}
	if (b->p == start.p)
		return prepend(b, "/", 1);
	return true;
}

static char *path_rcu(const struct path *path, char *buf, int buflen)
{
	seqcount_t *rs = &rename_lock.seqcount.seqcount;
	struct pbuf end = { .p = buf + buflen, .room = buflen }, b;
	struct path root;
	unsigned int seq;
	bool fit;
	int i;

	if (path->dentry->d_op && path->dentry->d_op->d_dname &&
	    (!IS_ROOT(path->dentry) || path->dentry != path->mnt->mnt_root)) {
		/* These are never renamed. */
		if (!READ_ONCE(path->dentry->d_name.len) || !prepend(&end, " (deleted)", 11) ||
		    !prepend_dname(&end, path->dentry))
			return ERR_PTR(-EOPNOTSUPP);
		return end.p;
	}
	if (!current->fs || !lxbsm_fs_path(current->fs, true, &root))
		return ERR_PTR(-EAGAIN);
	if (d_unlinked(path->dentry))
		fit = prepend(&end, " (deleted)", 11);
	else
		fit = prepend(&end, "", 1);
	if (!fit)
		return ERR_PTR(-ENAMETOOLONG);
	for (i = 0; i < WALK_TRIES; i++) {
		seq = raw_seqcount_begin(rs);	/* odd: the retry below fails */
		b = end;
		fit = walk(path, &root, &b);
		if (!read_seqcount_retry(rs, seq))
			return fit ? b.p : ERR_PTR(-ENAMETOOLONG);
		cpu_relax();
	}
	return ERR_PTR(-EAGAIN);
}

char *lxbsm_d_path(const struct path *path, char *buf, int buflen)
{
	char *p;

	rcu_read_lock();
	p = path_rcu(path, buf, buflen);
	rcu_read_unlock();
	return p;
}

/*
 * Is struct mount's start as above?  A mount's parent, read at the offset
 * assumed, must be a mount whose tree holds its mountpoint; read without
 * faulting, so that a wrong layout is a refusal, not an oops.  Then the walk
 * must give d_path()'s answer for paths that cross mounts.
 */
static bool layout_holds(const struct path *path)
{
	struct lxbsm_mount *m = real_mnt(path->mnt), *up;
	struct dentry *mp;
	struct super_block *sb, *upsb;

	if (copy_from_kernel_nofault(&up, &m->parent, sizeof(up)) ||
	    copy_from_kernel_nofault(&mp, &m->mountpoint, sizeof(mp)) || !up || !mp ||
	    copy_from_kernel_nofault(&upsb, &up->mnt.mnt_sb, sizeof(upsb)) ||
	    copy_from_kernel_nofault(&sb, &mp->d_sb, sizeof(sb)))
		return false;
	return sb == upsb;
}

int lxbsm_d_path_selftest(void)
{
	static const char *const names[] = { "/proc/self", "/sys/kernel", "/dev/null" };
	char *a, *b, *pa, *pb;
	int i, crossed = 0, ret = 0;
	struct path path, root;

	a = kmalloc(PATH_MAX, GFP_KERNEL);
	b = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!a || !b) {
		ret = -ENOMEM;
		goto out;
	}
	get_fs_root(current->fs, &root);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (kern_path(names[i], 0, &path))
			continue;
		if (path.mnt != root.mnt) {
			if (!layout_holds(&path)) {
				path_put(&path);
				ret = -EINVAL;
				break;
			}
			crossed++;
		}
		pa = d_path(&path, a, PATH_MAX);
		pb = lxbsm_d_path(&path, b, PATH_MAX);
		path_put(&path);
		if (IS_ERR(pa) || IS_ERR(pb) || strcmp(pa, pb)) {
			ret = -EINVAL;
			break;
		}
	}
	path_put(&root);
	if (!ret && !crossed)
		ret = -ENOENT;
	if (ret)
		pr_err("PREEMPT_RT: cannot make paths without locks on this kernel (struct mount not as expected, or no mount to check it on: /proc, /sys, /dev): %d\n",
		       ret);
out:
	kfree(a);
	kfree(b);
	return ret;
}
#else
char *lxbsm_d_path(const struct path *path, char *buf, int buflen)
{
	return d_path(path, buf, buflen);
}

int lxbsm_d_path_selftest(void)
{
	return 0;
}
#endif
