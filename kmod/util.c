// SPDX-License-Identifier: GPL-2.0
/*
 * Helpers for hooks: user strings without faulting, and absolute paths.
 */
#include <linux/dcache.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs_struct.h>
#include <linux/namei.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "lxbsm.h"

/* strncpy_from_user_nofault() is not exported; this is its body. */
long lxbsm_strncpy_user_nofault(char *dst, const char __user *src, long count)
{
	long ret;

	if (unlikely(count <= 0))
		return 0;
	pagefault_disable();
	ret = strncpy_from_user(dst, src, count);
	pagefault_enable();
	/* Too long: keep it NUL-terminated and say so by returning count. */
	if (ret >= count)
		dst[count - 1] = '\0';
	return ret;
}

/* d_path() into record scratch 0; "" if the path cannot be made. */
void lxbsm_tok_file_path(struct lxbsm_rec *r, const struct file *file)
{
	char *buf = lxbsm_rec_pathbuf(r, 0);
	char *end = buf + LXBSM_PATH_MAX - 1;
	char *p = lxbsm_d_path(&file->f_path, buf, LXBSM_PATH_MAX);

	if (IS_ERR(p))
		lxbsm_tok_path_len(r, "", 0);
	/*
	 * d_path() and d_dname() write the name at the end of the buffer, its
	 * NUL last: its length needs no counting.  Counted if not so.
	 */
	else if (p >= buf && p <= end && !*end)
		lxbsm_tok_path_len(r, p, end - p);
	else
		lxbsm_tok_path(r, p);
}

/* Tries of fs->seq before a reader gives up. */
#define FS_SEQ_TRIES	4

/*
 * fs->root (@root) or fs->pwd of @fs, without taking references or
 * fs->lock: fs->seq as getcwd does, but never waiting for a writer.  On
 * PREEMPT_RT read_seqcount_begin() on this seqcount_spinlock_t takes
 * fs->lock (a sleeping lock) while a writer runs, so the plain seqcount
 * inside it is read instead, and a section a writer overlapped is retried
 * a few times, then given up (false).  Under rcu_read_lock(): dentries and
 * mounts are RCU-freed.
 */
bool lxbsm_fs_path(struct fs_struct *fs, bool root, struct path *out)
{
	seqcount_t *sc = lxbsm_fs_seqcount(fs);
	unsigned int seq;
	int i;

	for (i = 0; i < FS_SEQ_TRIES; i++) {
		seq = raw_seqcount_begin(sc);	/* odd: the retry below fails */
		*out = root ? fs->root : fs->pwd;
		if (!read_seqcount_retry(sc, seq))
			return true;
		cpu_relax();
	}
	return false;
}

/* The current working directory's path (see lxbsm_fs_path()). */
static char *cwd_path(char *buf, int len)
{
	struct fs_struct *fs = current->fs;
	struct path pwd;
	char *p;

	if (!fs)
		return ERR_PTR(-ENOENT);
	rcu_read_lock();
	if (lxbsm_fs_path(fs, false, &pwd))
		p = lxbsm_d_path(&pwd, buf, len);
	else
		p = ERR_PTR(-EAGAIN);
	rcu_read_unlock();
	return p;
}

/*
 * The absolute form of a name a process passed (FreeBSD's canonical path):
 * as given if absolute, else joined to the directory of @dfd or the cwd.
 * Used where the kernel never resolved the name (the call failed).  The
 * result lives in the record's path scratch 1.
 */
const char *lxbsm_abs_path(struct lxbsm_rec *r, int dfd, const char *name)
{
	char *dir = lxbsm_rec_pathbuf(r, 1);
	size_t blen, nlen = strlen(name);
	char *base;
	bool slash;

	if (name[0] == '/' || !name[0])
		return name;
	if (dfd == AT_FDCWD) {
		base = cwd_path(dir, LXBSM_PATH_MAX);
	} else {
		struct file *f = fget_raw(dfd);

		if (!f)
			return name;
		base = lxbsm_d_path(&f->f_path, dir, LXBSM_PATH_MAX);
		fput(f);
	}
	if (IS_ERR(base))
		return name;
	/* base is a suffix of @dir: move it to the front and append. */
	blen = strlen(base);
	slash = blen && base[blen - 1] == '/';
	if (blen + !slash + nlen + 1 > LXBSM_PATH_MAX)
		return name;
	memmove(dir, base, blen);
	if (!slash)
		dir[blen++] = '/';
	memcpy(dir + blen, name, nlen + 1);
	return dir;
}

/* The same for a user-space name, read without faulting (scratch 0). */
const char *lxbsm_user_path(struct lxbsm_rec *r, int dfd, const char __user *name)
{
	char *out = lxbsm_rec_pathbuf(r, 0);
	long n;

	n = lxbsm_strncpy_user_nofault(out, name, LXBSM_PATH_MAX);
	if (n < 0)
		return "<unreadable>";
	return lxbsm_abs_path(r, dfd, out);
}
