/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lxbsm internals shared by the module's files.
 *
 * Context rules for everything called from a hook (kprobe, kretprobe,
 * tracepoint): no sleeping, no faulting user copies (only the *_nofault
 * helpers below), no allocator at all (not even GFP_ATOMIC: on PREEMPT_RT
 * the slab allocator and kfree() take sleeping locks) but the pools of
 * pool.h with the failure counted, raw spinlocks only (a spinlock_t sleeps
 * on PREEMPT_RT), short critical sections.
 */
#ifndef LXBSM_H
#define LXBSM_H

#include <linux/fs.h>
#include <linux/jump_label.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/types.h>
#include <linux/uidgid.h>

#include "events.h"
#include "include/uapi/lxbsm.h"
#include "ring.h"

/* LXBSM_VERSION comes from the top-level VERSION file (kmod/Kbuild). */
#ifndef LXBSM_VERSION
#error "LXBSM_VERSION is not defined: build through kmod/Kbuild"
#endif

/* Budgets inside one record (a BSM record is at most 32767 bytes). */
#define LXBSM_ARGV_MAX		16384	/* exec_args strings */
#define LXBSM_ENV_MAX		8192	/* exec_env strings */
#define LXBSM_PATH_MAX		PATH_MAX

extern struct lxbsm_ring lxbsm_ring;

/* ---- configuration and pre-selection (preselect.c) ---- */

struct lxbsm_cfg {
	struct rcu_head rcu;
	u64 gen;			/* bumped on every change */
	u32 policy;			/* LXBSM_POLICY_* */
	struct lxbsm_mask flags;	/* attributable events */
	struct lxbsm_mask naflags;	/* non-attributable events */
	u32 any;			/* union of every mask bit in use */
	u32 event_class[LXBSM_EV_NR];
	u32 nr_users;
	struct lxbsm_user_mask users[];	/* sorted by auid */
};

extern struct lxbsm_cfg __rcu *lxbsm_cfg;
extern const u16 lxbsm_event_aue[LXBSM_EV_NR];

int lxbsm_cfg_init(void);
void lxbsm_cfg_exit(void);
long lxbsm_cfg_set(const struct lxbsm_config __user *ucfg);
long lxbsm_cfg_get(struct lxbsm_config __user *ucfg);
struct lxbsm_mask lxbsm_mask_for(const struct lxbsm_cfg *cfg, u32 auid);

static inline u32 lxbsm_policy(void)
{
	const struct lxbsm_cfg *cfg;
	u32 policy;

	rcu_read_lock();
	cfg = rcu_dereference(lxbsm_cfg);
	policy = cfg->policy;
	rcu_read_unlock();
	return policy;
}

/* ---- per-process audit table (proc.c) ---- */

struct lxbsm_tid {
	u32 port;			/* terminal device or remote port */
	u32 type;			/* 4 (IPv4) or 16 (IPv6) */
	u8 addr[16];			/* network order */
};

/* What one record needs to know about its process, copied under RCU. */
struct lxbsm_proc_snap {
	u32 auid;
	u32 asid;
	struct lxbsm_tid tid;
	struct lxbsm_mask mask;
};

/* The login-type programs the session rules know (ev_session.c). */
enum lxbsm_prog {
	LXBSM_PROG_NONE,
	LXBSM_PROG_SSHD,		/* network login daemon */
	LXBSM_PROG_LOGIN,		/* local login */
	LXBSM_PROG_SU,
	LXBSM_PROG_SUDO,
};

/* A session event the table decided on: LXBSM_EV_NR when there is none. */
struct lxbsm_session_ev {
	enum lxbsm_event ev;		/* LOGIN, OPENSSH, LOGOUT, SU, SUDO */
	bool failed;
	u32 from_uid;			/* SU, SUDO: the real uid that ran it */
	struct lxbsm_proc_snap proc;	/* the record's subject */
};

/*
 * A write to /proc/self/loginuid that started no session: an AUE_SETAUID,
 * and what lxbsm made of it.
 */
enum lxbsm_setauid_how {
	LXBSM_SETAUID_NONE,		/* a login: the session record says it */
	LXBSM_SETAUID_SET,		/* taken: the process had no audit id */
	LXBSM_SETAUID_KEPT,		/* not taken: the audit id is set once */
	LXBSM_SETAUID_REFUSED,		/* not taken: the writer may not set one */
};

struct lxbsm_setauid {
	enum lxbsm_setauid_how how;
	u32 old_auid;			/* lxbsm's audit id of the writer before */
	struct lxbsm_proc_snap proc;	/* the writer before the write */
};

struct cred;
/* Root of the init user namespace (real and effective uid 0). */
bool lxbsm_cred_is_root(const struct cred *cred);
/* May set audit ids: root or CAP_AUDIT_CONTROL in the init user namespace. */
bool lxbsm_cred_audit_ctl(const struct cred *cred);

int lxbsm_proc_init(void);
void lxbsm_proc_exit(void);
void lxbsm_proc_fork(struct task_struct *parent, struct task_struct *child);
bool lxbsm_proc_remove(struct task_struct *task, struct lxbsm_session_ev *end);
void lxbsm_proc_snapshot(struct task_struct *task, struct lxbsm_proc_snap *snap);
bool lxbsm_proc_wants_peer(struct task_struct *task);
void lxbsm_proc_accepted(struct task_struct *task, const struct lxbsm_tid *peer);
void lxbsm_proc_setuid(struct task_struct *task, bool chrooted, bool root,
		       struct lxbsm_session_ev *out);
bool lxbsm_proc_idchange_live(void);
void lxbsm_proc_setgid(struct task_struct *task);
void lxbsm_proc_set_login(struct task_struct *task, u32 auid, u32 asid, bool may,
			  const struct lxbsm_tid *tty, struct lxbsm_session_ev *out,
			  struct lxbsm_setauid *sa);
void lxbsm_proc_exec(struct task_struct *task, enum lxbsm_prog prog,
		     const struct lxbsm_tid *tty, const struct lxbsm_tid *peer,
		     struct lxbsm_session_ev *out);
/* The peer of the Internet socket at @fd of current, as a terminal id. */
bool lxbsm_sock_peer_tid(int fd, struct lxbsm_tid *tid);
/* Write the record of a session event, if pre-selected (ev_session.c). */
void lxbsm_session_record(const struct lxbsm_session_ev *sev);
/*
 * The controlling tty as a terminal id: port = its device, address 0.
 * False (port 0) if it could not be read without waiting.
 */
bool lxbsm_tty_tid(struct lxbsm_tid *tid);
u64 lxbsm_proc_count(void);
extern atomic64_t lxbsm_proc_alloc_failed;

/*
 * Pre-selection.  lxbsm_interested() is the whole cost of an event nobody
 * selected: one class lookup, and the process lookup only if that class is
 * in some mask at all.  It leaves sel->classes 0 in that case, and only
 * then is sel->proc not filled in.
 */
struct lxbsm_sel {
	enum lxbsm_event ev;
	u32 classes;
	struct lxbsm_proc_snap proc;
};

bool lxbsm_interested(enum lxbsm_event ev, struct lxbsm_sel *sel);
bool lxbsm_selected(const struct lxbsm_sel *sel, bool failed);
/* The same decision for a process described by @proc rather than current. */
bool lxbsm_selected_for(enum lxbsm_event ev, const struct lxbsm_proc_snap *proc, bool failed);

/* ---- BSM records (record.c) ---- */

struct lxbsm_rec;

struct lxbsm_rec *lxbsm_rec_begin(enum lxbsm_event ev);
void lxbsm_rec_abort(struct lxbsm_rec *r);
/* Append subject, return, [seq], trailer; publish; release the scratch. */
void lxbsm_rec_finish(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc,
		      long ret);
/* Process context: a record in its own buffer; may sleep while it is open. */
struct lxbsm_rec *lxbsm_rec_new(enum lxbsm_event ev);
int lxbsm_rec_finish_wait(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
			  unsigned int wait_ms);
int lxbsm_rec_finish_wait_as(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
			     unsigned int wait_ms, const struct cred *cred, pid_t pid);
/* A scratch buffer of LXBSM_PATH_MAX bytes owned by the open record. */
char *lxbsm_rec_pathbuf(struct lxbsm_rec *r, int which);
/*
 * A per-CPU buffer of LXBSM_PATH_MAX bytes for an entry handler's own use
 * (exec control's path), given back before the handler returns: a path a
 * return handler needs is made there again, from the file, into the
 * record's buffer.  Kept out of the kretprobe instances, of which there
 * are thousands.  NULL (counted as lost, LXBSM_LOST_NO_SCRATCH) if taken:
 * handlers run with preemption disabled and do not nest, so never in
 * practice.
 */
char *lxbsm_hook_pathbuf_get(void);
void lxbsm_hook_pathbuf_put(char *buf);

/*
 * A kernel uid or gid as the initial user namespace names it, which is what
 * records carry: from_kuid(&init_user_ns, @k) without its map search.  A
 * kuid_t holds the initial namespace's id (its map is the identity on every
 * id, (uid_t)-1 included); lxbsm_record_init() checks that at load.
 */
static inline u32 lxbsm_uid(kuid_t k)
{
	return __kuid_val(k);
}

static inline u32 lxbsm_gid(kgid_t k)
{
	return __kgid_val(k);
}

void __lxbsm_tok_arg32(struct lxbsm_rec *r, u8 n, u32 value, const char *text, size_t len);
void __lxbsm_tok_arg64(struct lxbsm_rec *r, u8 n, u64 value, const char *text, size_t len);

/* arg32 and arg64: @text's length is a constant where @text is a literal. */
static __always_inline void lxbsm_tok_arg32(struct lxbsm_rec *r, u8 n, u32 value,
					    const char *text)
{
	__lxbsm_tok_arg32(r, n, value, text, strlen(text) + 1);
}

static __always_inline void lxbsm_tok_arg64(struct lxbsm_rec *r, u8 n, u64 value,
					    const char *text)
{
	__lxbsm_tok_arg64(r, n, value, text, strlen(text) + 1);
}

void lxbsm_tok_path(struct lxbsm_rec *r, const char *path);
/* A path token of @len bytes at @path (a NUL follows them). */
void lxbsm_tok_path_len(struct lxbsm_rec *r, const char *path, size_t len);
void lxbsm_tok_text(struct lxbsm_rec *r, const char *text);
void lxbsm_tok_opaque(struct lxbsm_rec *r, const void *data, u16 len);
/* A file's attributes as the attr32 token carries them. */
struct lxbsm_attr {
	u32 mode;
	u32 uid;
	u32 gid;
	u32 fsid;
	u64 nodeid;
	u32 dev;
};

void lxbsm_attr_of(const struct inode *inode, struct lxbsm_attr *a);
void lxbsm_tok_attr32(struct lxbsm_rec *r, const struct lxbsm_attr *a);
void lxbsm_tok_exit(struct lxbsm_rec *r, u32 status, u32 retval);
void lxbsm_tok_sockaddr(struct lxbsm_rec *r, const void *sa, size_t len);
/* exec_args/exec_env from a block of NUL-terminated user strings. */
void lxbsm_tok_strings_user(struct lxbsm_rec *r, u8 id, const char __user *start,
			    unsigned long len, u32 budget);
/* exec_args/exec_env from a user array of string pointers (failed exec). */
void lxbsm_tok_strings_argv(struct lxbsm_rec *r, u8 id, const void __user *argv,
			    bool compat, u32 budget);

#define AUT_EXEC_ARGS	0x3c
#define AUT_EXEC_ENV	0x3d

u8 lxbsm_errno_to_bsm(int err);

/* Count a record lost before it reached the ring. */
void lxbsm_lost(enum lxbsm_lost_reason why);
void lxbsm_lost_n(enum lxbsm_lost_reason why, u64 n);
int lxbsm_record_init(void);
void lxbsm_record_exit(void);
bool lxbsm_record_can_wait(void);
u64 lxbsm_record_waited(void);

/* ---- helpers for hooks (util.c) ---- */

long lxbsm_strncpy_user_nofault(char *dst, const char __user *src, long count);
/* Absolute path of a user-supplied name relative to dfd (or the cwd). */
const char *lxbsm_user_path(struct lxbsm_rec *r, int dfd, const char __user *name);
/* The same for a name already in kernel memory. */
const char *lxbsm_abs_path(struct lxbsm_rec *r, int dfd, const char *name);
/* The path token of @file, made with d_path() in record scratch 0 ("" if it cannot be). */
void lxbsm_tok_file_path(struct lxbsm_rec *r, const struct file *file);
struct fs_struct;
/* fs->root or fs->pwd without fs->lock or waiting; under rcu_read_lock(). */
bool lxbsm_fs_path(struct fs_struct *fs, bool root, struct path *out);
/* d_path() for handlers; without locks on PREEMPT_RT (dpath.c). */
char *lxbsm_d_path(const struct path *path, char *buf, int buflen);
/* At load: can lxbsm_d_path() work on this kernel?  0 or an error (logged). */
int lxbsm_d_path_selftest(void);

/* ---- hooks (hooks.c) ---- */

int lxbsm_hooks_init(void);
void lxbsm_hooks_exit(void);
/* Arm the hooks the configuration now selects events of, disarm the rest. */
void lxbsm_hooks_arm(void);
u32 lxbsm_hooks_count(void);
int lxbsm_hook_info(struct lxbsm_hook_info *info);
int lxbsm_hook_cost(struct lxbsm_hook_cost *cost);
/* Cost accounting is on (hooks.c): records are timed too. */
DECLARE_STATIC_KEY_FALSE(lxbsm_cost_on);
/* A record begun at @t_begin, built by @t_built, in the ring at @t_done. */
void lxbsm_cost_record(u64 t_begin, u64 t_built, u64 t_done);
void lxbsm_hooks_missed(struct lxbsm_status *st);

#endif /* LXBSM_H */
