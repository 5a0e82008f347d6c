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
 * Never subject to the rules: kernel threads, and the process that holds
 * the ring (the audit daemon), so that no rule can stop auditing.
 *
 * Everything here may run in a kprobe handler: RCU, atomics, no sleeping.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/dcache.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hash.h>
#include <linux/kdev_t.h>
#include <linux/mman.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/stringhash.h>
#include <linux/uaccess.h>

#include "hooks.h"
#include "xctl.h"

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
	atomic64_t *hits;		/* nr counters */
	s32 *next_ino, *next_path;	/* nr chain links each */
	s32 by_ino[1 << XC_HASH_BITS];
	s32 by_path[1 << XC_HASH_BITS];
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

static struct lxbsm_xc __rcu *xc_rules;
static DEFINE_MUTEX(xc_mutex);
static atomic64_t xc_denied = ATOMIC64_INIT(0);
atomic_t lxbsm_consumer_tgid = ATOMIC_INIT(0);

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

static bool exempt(void)
{
	return current->flags & PF_KTHREAD ||
	       task_tgid_nr(current) == atomic_read(&lxbsm_consumer_tgid);
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
		return rule->id == from_kuid(&init_user_ns, c->uid) ||
		       rule->id == from_kuid(&init_user_ns, c->euid) ||
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
 */
bool lxbsm_xc_check(const struct file *file, char *buf, int len, struct lxbsm_xc_verdict *v)
{
	const struct lxbsm_xc *x;
	const char *path = NULL;
	struct lazy_auid auid = { .known = false };
	u64 dev, ino;
	bool deny = false;
	s32 a, b, i;

	v->path = NULL;
	if (exempt())
		return false;
	file_id(file, &dev, &ino);
	rcu_read_lock();
	x = rcu_dereference(xc_rules);
	if (!x || x->mode == LXBSM_XC_OFF)
		goto out;
	if (x->need_path) {
		path = d_path(&file->f_path, buf, len);
		if (IS_ERR(path))
			path = NULL;
		v->path = path;
	}
	/* Walk both chains in rule order: the first rule that applies decides. */
	a = x->by_ino[ino_hash(dev, ino)];
	b = path ? x->by_path[path_hash(path)] : -1;
	while (a >= 0 || b >= 0) {
		const struct lxbsm_xc_rule *rule;
		bool hit;

		if (b < 0 || (a >= 0 && a <= b)) {
			i = a;
			rule = &x->rules[i];
			hit = rule->flags & LXBSM_XC_INODE && rule->dev == dev && rule->ino == ino;
			if (a == b) {	/* the same rule on both chains */
				hit = hit || !strcmp(rule->path, path);
				b = x->next_path[b];
			}
			a = x->next_ino[a];
		} else {
			i = b;
			rule = &x->rules[i];
			hit = !strcmp(rule->path, path);
			b = x->next_path[b];
		}
		if (!hit || !who_matches(rule, &auid))
			continue;
		atomic64_inc(&x->hits[i]);
		if (rule->action != LXBSM_XC_DENY)
			break;
		deny = true;
		v->mode = x->mode;
		if (x->mode != LXBSM_XC_MONITOR)
			atomic64_inc(&xc_denied);
		snprintf(v->text, sizeof(v->text), "exec_control: %s by line %u (deny %s)",
			 mode_word[x->mode], rule->line,
			 rule->path[0] ? rule->path : path ? path : "(inode)");
		break;
	}
out:
	rcu_read_unlock();
	return deny;
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
	       req.nr_rules * (sizeof(atomic64_t) + 2 * sizeof(s32));
	x = kvzalloc(size, GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	x->mode = req.mode;
	x->nr = req.nr_rules;
	x->hits = (atomic64_t *)&x->rules[x->nr];
	x->next_ino = (s32 *)&x->hits[x->nr];
	x->next_path = &x->next_ino[x->nr];
	memset(x->by_ino, 0xff, sizeof(x->by_ino));	/* -1: empty */
	memset(x->by_path, 0xff, sizeof(x->by_path));
	if (copy_from_user(x->rules, u64_to_user_ptr(req.rules),
			   array_size(x->nr, sizeof(x->rules[0])))) {
		kvfree(x);
		return -EFAULT;
	}
	for (i = 0; i < x->nr; i++) {
		struct lxbsm_xc_rule *rule = &x->rules[i];

		if (rule->action > LXBSM_XC_DENY || rule->who >= LXBSM_XC_WHO_NR ||
		    rule->flags & ~LXBSM_XC_INODE || rule->reserved ||
		    strnlen(rule->path, sizeof(rule->path)) == sizeof(rule->path) ||
		    (rule->path[0] && rule->path[0] != '/') ||
		    (!rule->path[0] && !(rule->flags & LXBSM_XC_INODE))) {
			kvfree(x);
			return -EINVAL;
		}
		x->need_path |= rule->path[0] != '\0';
	}
	/* Chains in rule order: insert from the last rule to the first. */
	for (i = x->nr; i-- > 0;) {
		struct lxbsm_xc_rule *rule = &x->rules[i];
		s32 *head;

		x->next_ino[i] = -1;
		x->next_path[i] = -1;
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

	RCU_INIT_POINTER(xc_rules, NULL);
	rcu_barrier();		/* rule sets freed by call_rcu() */
	kvfree(x);
}

/*
 * security_mmap_file(struct file *file, unsigned long prot, unsigned long
 * flags): a file mapped executable outside exec, i.e. the dynamic loader
 * run by hand ("ld.so /usr/bin/df"), which never execs the program.  The
 * kernel's own mappings during an exec are left alone: that file was
 * judged at security_bprm_check.
 */
struct mmap_ctx {
	bool deny;
	struct lxbsm_xc_verdict v;
	struct lxbsm_attr attr;
	char path[];
};

#define MMAP_DATA_SIZE	KRETPROBE_MAX_DATA_SIZE
#define MMAP_PATH_SIZE	(MMAP_DATA_SIZE - sizeof(struct mmap_ctx))

size_t lxbsm_mmap_data_size(void)
{
	return MMAP_DATA_SIZE;
}

int lxbsm_mmap_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)regs_get_kernel_argument(regs, 0);
	unsigned long prot = regs_get_kernel_argument(regs, 1);
	struct mmap_ctx *ctx = (struct mmap_ctx *)ri->data;
	const char *p;

	if (!file || !(prot & PROT_EXEC) || current->in_execve)
		return 1;
	if (!lxbsm_xc_check(file, ctx->path, MMAP_PATH_SIZE, &ctx->v))
		return 1;
	/* d_path() writes at the end of the buffer: move the path to its start. */
	p = ctx->v.path ? ctx->v.path : d_path(&file->f_path, ctx->path, MMAP_PATH_SIZE);
	if (IS_ERR(p))
		ctx->path[0] = '\0';
	else
		memmove(ctx->path, p, strlen(p) + 1);
	lxbsm_attr_of(file_inode(file), &ctx->attr);
	ctx->deny = ctx->v.mode == LXBSM_XC_ENFORCE;
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_mmap_entry);

int lxbsm_mmap_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct mmap_ctx *ctx = (struct mmap_ctx *)ri->data;
	long ret = regs_return_value(regs);
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
		lxbsm_tok_path(r, ctx->path);
		lxbsm_tok_attr32(r, &ctx->attr);
		lxbsm_tok_text(r, ctx->v.text);
		lxbsm_rec_finish(r, &snap, ret);
	}
	if (ctx->v.mode == LXBSM_XC_KILL)
		send_sig(SIGKILL, current, 1);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_mmap_ret);
