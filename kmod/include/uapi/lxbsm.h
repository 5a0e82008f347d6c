/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lxbsm: the ABI shared by the kernel module and user space.
 *
 * /dev/lxbsm carries BSM audit records from the kernel to one consumer
 * through a ring buffer in the style of the BPF ring buffer:
 *
 *   mmap offset 0           one page, read-write: struct lxbsm_consumer_page
 *   mmap offset PAGE_SIZE   read-only: struct lxbsm_producer_page (one page)
 *                           followed by the data area mapped twice, so a
 *                           record that wraps is still contiguous
 *
 * Each record in the data area starts with a struct lxbsm_rec_hdr and is
 * padded to 8 bytes.  A record whose len has LXBSM_REC_BUSY set is still
 * being written: stop there and wait.  A record with LXBSM_REC_DISCARD set
 * is to be skipped.  After consuming, the reader stores the new position in
 * consumer_pos; the kernel never trusts it beyond free-space arithmetic.
 *
 * Opening the device read-only gives the control interface (ioctls);
 * opening it read-write claims the single consumer role (-EBUSY if taken).
 */
#ifndef _UAPI_LXBSM_H
#define _UAPI_LXBSM_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define LXBSM_ABI_VERSION	5	/* 2: LXBSM_IOC_COPY, sha256 exec rules; 3: 64 hooks, lost no_instance, submitter text; 4: per-hook misses only through LXBSM_IOC_HOOK_INFO; 5: protected trees */
#define LXBSM_DEVICE		"lxbsm"

/* Record header flags, in the top bits of lxbsm_rec_hdr.len. */
#define LXBSM_REC_BUSY		(1U << 31)
#define LXBSM_REC_DISCARD	(1U << 30)
#define LXBSM_REC_LEN_MASK	(~(LXBSM_REC_BUSY | LXBSM_REC_DISCARD))

/* lxbsm_rec_hdr.type */
enum lxbsm_rec_type {
	LXBSM_REC_BSM = 1,		/* one whole BSM record: header .. trailer */
};

struct lxbsm_rec_hdr {
	__u32 len;			/* payload bytes, without this header */
	__u32 type;			/* enum lxbsm_rec_type */
};

/* Why a record was lost (index into the lost[] counters). */
enum lxbsm_lost_reason {
	LXBSM_LOST_RING_FULL,		/* no space in the ring */
	LXBSM_LOST_TOO_BIG,		/* record larger than a quarter of the ring */
	LXBSM_LOST_NO_SCRATCH,		/* no record-building buffer (nesting) */
	LXBSM_LOST_NO_INSTANCE,		/* a call a hook missed (kretprobe pool
					 * exhausted, probe inside a probe)
					 */
	LXBSM_LOST_NR = 8,
};

struct lxbsm_consumer_page {
	__u64 consumer_pos;
};

struct lxbsm_producer_page {
	__u64 producer_pos;		/* bytes ever reserved */
	__u64 data_size;		/* size of the data area, a power of two */
	__u32 abi_version;
	__u32 hdr_size;			/* sizeof(struct lxbsm_rec_hdr) */
	__u64 records;			/* records committed */
	__u64 bytes;			/* payload bytes committed */
	__u64 lost[LXBSM_LOST_NR];
};

struct lxbsm_status {
	__u32 abi_version;
	__u32 struct_size;		/* sizeof(struct lxbsm_status) */
	char version[32];		/* module version string */
	__u64 page_size;
	__u64 data_size;		/* ring data area, bytes */
	__u64 producer_pos;
	__u64 consumer_pos;
	__u64 high_water;		/* largest producer - consumer seen */
	__u64 records;
	__u64 bytes;
	__u64 lost[LXBSM_LOST_NR];
	__u64 submitted;		/* records submitted from user space */
	__u64 table_entries;		/* per-process audit table entries */
	__u64 table_alloc_failed;	/* entries that could not be allocated */
	__u64 waited;			/* records that waited for ring space */
	__u32 consumer_open;		/* 1 while a consumer holds the ring */
	__u32 can_wait;			/* 1 if, without cnt, producers wait */
	__u32 nr_hooks;			/* hooks in the table (LXBSM_IOC_HOOK_INFO) */
	__u32 reserved;
	__u64 missed;			/* calls every hook missed, in all */
};

/*
 * Submit one complete BSM record from user space (the audit(2) of BSM
 * systems, for login programs and the daemon).  The record must be a header
 * token whose byte count equals len, followed by tokens and a trailer with
 * the same count, at most LXBSM_MAX_SUBMIT bytes.  The module puts a text
 * token before the trailer, "lxbsm: submitted from user space by pid P
 * auid A ruid R euid E" (the submitter as the kernel knows it), and fixes
 * both byte counts: a submitted record is always told from the module's own,
 * which never carry that text.  The header's time is the submitter's.
 *
 * Capabilities, each checked against the credentials that opened the file:
 *   open read-write (the consumer)	CAP_AUDIT_READ
 *   open read-only			CAP_AUDIT_CONTROL or CAP_AUDIT_WRITE
 *   LXBSM_IOC_SUBMIT			CAP_AUDIT_WRITE
 *   LXBSM_IOC_SET_CONFIG, _SET_EXEC_RULES	CAP_AUDIT_CONTROL
 *   LXBSM_IOC_STATUS, _GET_CONFIG, _HOOK_INFO, _HOOK_COST, _GET_EXEC_RULES,
 *   _FILE_ID, _PROTECT_STATUS
 *					CAP_AUDIT_CONTROL, or the consumer
 *   LXBSM_IOC_SET_PROTECT		CAP_AUDIT_CONTROL
 *   LXBSM_IOC_COPY, mmap, poll		the consumer
 */
struct lxbsm_submit {
	__u64 buf;			/* user pointer to the record */
	__u32 len;
	__u32 flags;			/* must be 0 */
};

#define LXBSM_MAX_RECORD	32767	/* MAX_AUDIT_RECORD_SIZE */
#define LXBSM_SUBMITTED_TEXT	"lxbsm: submitted from user space by"
#define LXBSM_SUBMITTED_TEXT_MAX	128	/* the whole text token's string */
#define LXBSM_MAX_SUBMIT	(LXBSM_MAX_RECORD - 3 - LXBSM_SUBMITTED_TEXT_MAX)

/* Audit policy bits (BSM values, audit_control "policy:"). */
#define LXBSM_POLICY_CNT	0x0001	/* count and drop when the ring is full */
#define LXBSM_POLICY_ARGV	0x0004	/* exec_args token */
#define LXBSM_POLICY_ARGE	0x0008	/* exec_env token */
#define LXBSM_POLICY_SEQ	0x0010	/* seq token */
#define LXBSM_POLICY_KNOWN	(LXBSM_POLICY_CNT | LXBSM_POLICY_ARGV | \
				 LXBSM_POLICY_ARGE | LXBSM_POLICY_SEQ)

/* A pre-selection mask: classes audited on success and on failure. */
struct lxbsm_mask {
	__u32 success;
	__u32 failure;
};

/* One line of audit_event: which classes an event belongs to. */
struct lxbsm_event_class {
	__u32 event;			/* AUE number */
	__u32 classes;
};

/* One line of audit_user, by audit id. */
struct lxbsm_user_mask {
	__u32 auid;
	__u32 reserved;			/* must be 0 */
	struct lxbsm_mask always;
	struct lxbsm_mask never;
};

/*
 * The whole pre-selection configuration, replaced atomically.  Events the
 * module does not emit are ignored; events it emits but that are not listed
 * keep their built-in classes.  For LXBSM_IOC_GET_CONFIG, nr_events and
 * nr_users give the room at events/users and come back as the counts.
 */
struct lxbsm_config {
	__u32 policy;			/* LXBSM_POLICY_* */
	__u32 nr_events;
	__u32 nr_users;
	__u32 reserved;			/* must be 0 */
	struct lxbsm_mask flags;	/* audit_control flags: */
	struct lxbsm_mask naflags;	/* audit_control naflags: */
	__u64 events;			/* user pointer: lxbsm_event_class[] */
	__u64 users;			/* user pointer: lxbsm_user_mask[] */
};

#define LXBSM_MAX_USERS		65536

/* Hook states */
enum lxbsm_hook_state {
	LXBSM_HOOK_OFF,			/* not registered */
	LXBSM_HOOK_ON,
	LXBSM_HOOK_MISSING,		/* optional symbol absent on this kernel */
	LXBSM_HOOK_IDLE,		/* attached, disarmed: no mask selects its events */
};

struct lxbsm_hook_info {
	__u32 index;			/* in: 0 .. nr_hooks - 1 */
	__u32 state;			/* enum lxbsm_hook_state */
	__u64 missed;			/* kretprobe instances unavailable */
	__u64 hits;			/* events taken */
	char name[48];			/* the kernel symbol or tracepoint */
};

/*
 * LXBSM_IOC_HOOK_COST: what one hook's handlers cost, as BPF reports
 * run_cnt and run_time_ns per program, counted while the module parameter
 * cost is 1 (/sys/module/lxbsm/parameters/cost, writable at run time; off,
 * a handler pays one patched-out jump).  Counters only grow: take
 * differences.  Index nr_hooks is the work done outside every handler
 * (records finished by task work), named "(task work)"; past it, ENOENT.
 * The handlers' time includes the records they build and write.
 */
struct lxbsm_hook_cost {
	__u32 index;			/* in: 0 .. nr_hooks */
	__u32 on;			/* accounting is on now */
	__u64 entry_calls;		/* entry handler (kprobe, tracepoint) runs */
	__u64 entry_ns;
	__u64 ret_calls;		/* return handler runs (kretprobes) */
	__u64 ret_ns;
	__u64 records;			/* records finished */
	__u64 build_ns;			/* building them (first token to trailer) */
	__u64 ring_ns;			/* writing them to the ring */
	char name[48];
};

/*
 * Exec control: rules from the exec_control file, matched when the kernel
 * is about to run a file (security_bprm_check: the program, and a script's
 * interpreter) and when a file is mapped executable (security_mmap_file:
 * the dynamic loader run by hand).  First match wins; no match allows.
 * A rule names a file by device and inode (as LXBSM_IOC_FILE_ID gives
 * them) and/or by its canonical path, compared with the kernel's own path
 * of the file being run.
 */
enum lxbsm_xc_mode {
	LXBSM_XC_OFF,			/* no rules */
	LXBSM_XC_ENFORCE,		/* deny: the exec fails with EACCES */
	LXBSM_XC_MONITOR,		/* audit what would be denied, deny nothing */
	LXBSM_XC_KILL,			/* let it start, then SIGKILL it */
	LXBSM_XC_MODE_NR,
};

enum lxbsm_xc_action {
	LXBSM_XC_ALLOW,
	LXBSM_XC_DENY,
};

/* Whose exec a rule is about. */
enum lxbsm_xc_who {
	LXBSM_XC_ANYONE,
	LXBSM_XC_UID,			/* real, effective or audit id equals id */
	LXBSM_XC_GID,			/* real or effective gid, or a supplementary group */
	LXBSM_XC_AUID,			/* the audit id only */
	LXBSM_XC_WHO_NR,
};

#define LXBSM_XC_INODE		0x1	/* dev and ino are valid */
#define LXBSM_XC_SHA256		0x2	/* sha256 is valid: any file with that content */
#define LXBSM_XC_PATH_LEN	256
#define LXBSM_XC_MAX_RULES	4096

struct lxbsm_xc_rule {
	__u32 action;			/* enum lxbsm_xc_action */
	__u32 who;			/* enum lxbsm_xc_who */
	__u32 id;
	__u32 line;			/* line in the rules file (for the audit text) */
	__u32 flags;			/* LXBSM_XC_INODE, LXBSM_XC_SHA256 */
	__u32 reserved;			/* must be 0 */
	__u64 dev;
	__u64 ino;
	char path[LXBSM_XC_PATH_LEN];	/* canonical path, NUL-terminated; "" = none */
	__u8 sha256[32];		/* LXBSM_XC_SHA256 (then no path, no inode) */
};

/*
 * LXBSM_IOC_SET_EXEC_RULES replaces the whole rule set (hits must be 0);
 * LXBSM_IOC_GET_EXEC_RULES reads it back: nr_rules gives the room at rules
 * and hits (a __u64 per rule: how often it matched) and comes back as the
 * count.
 */
struct lxbsm_xc_config {
	__u32 mode;			/* enum lxbsm_xc_mode */
	__u32 nr_rules;
	__u64 rules;			/* user pointer: lxbsm_xc_rule[] */
	__u64 hits;			/* user pointer: __u64[], GET only */
	__u64 denied;			/* GET: execs and mappings refused or killed */
};

/*
 * LXBSM_IOC_FILE_ID: the device and inode the module sees for an open file
 * (an O_PATH descriptor will do), as exec control compares them.  stat(2)
 * may say otherwise (overlayfs, btrfs subvolumes), so rules are resolved
 * with this.
 */
struct lxbsm_file_id {
	__s32 fd;			/* in */
	__u32 reserved;			/* must be 0 */
	__u64 dev;			/* out */
	__u64 ino;			/* out */
};

/*
 * LXBSM_IOC_COPY (the consumer only): copy the committed BSM records that
 * follow consumer_pos into buf, without their ring headers, one after the
 * other as a trail holds them, until a record still being written, the
 * producer position, or buf_size.  consumer_pos does not move: the reader
 * stores end_pos there once the records are safe elsewhere.  Discarded
 * records are passed over (end_pos moves past them).  -EMSGSIZE: the first
 * record does not fit in buf_size (LXBSM_MAX_RECORD always does); -EIO:
 * consumer_pos is not a record boundary.
 */
struct lxbsm_copy {
	__u64 buf;			/* in: user pointer */
	__u32 buf_size;			/* in */
	__u32 records;			/* out: records copied */
	__u64 bytes;			/* out: bytes copied */
	__u64 end_pos;			/* out: ring position after them */
};

/*
 * Protected trees (docs/recovery.md).  LXBSM_IOC_SET_PROTECT replaces the
 * set of trees: nr_trees directories, each named by a descriptor (O_PATH
 * will do); 0 trees turns protection off.  The module keeps each
 * directory itself (a rename moves the tree with it), not its name.  Every
 * change to a regular file below one of them becomes a journal record
 * (AUE_LXBSM_J*, whatever the masks select): see docs/recovery.md for the
 * records' tokens.  -EINVAL: more than LXBSM_PROTECT_MAX trees or reserved
 * not 0; -EBADF: a bad descriptor; -ENOTDIR: not a directory.
 */
#define LXBSM_PROTECT_MAX	16
#define LXBSM_PROTECT_CHUNK	16384	/* data bytes in one AUE_LXBSM_JWRITE record */

struct lxbsm_protect {
	__u32 nr_trees;
	__u32 reserved;			/* must be 0 */
	__s32 fd[LXBSM_PROTECT_MAX];
};

struct lxbsm_protect_status {
	__u32 nr_trees;			/* trees in force */
	__u32 reserved;
	__u64 records;			/* journal records put in the ring */
	__u64 bytes;			/* file data in them */
	__u64 lost;			/* changes not captured (each named by a JLOST record or counted as lost) */
};

#define LXBSM_IOC_MAGIC		0xB5
#define LXBSM_IOC_STATUS	_IOR(LXBSM_IOC_MAGIC, 1, struct lxbsm_status)
#define LXBSM_IOC_SUBMIT	_IOW(LXBSM_IOC_MAGIC, 2, struct lxbsm_submit)
#define LXBSM_IOC_SET_CONFIG	_IOW(LXBSM_IOC_MAGIC, 3, struct lxbsm_config)
#define LXBSM_IOC_GET_CONFIG	_IOWR(LXBSM_IOC_MAGIC, 4, struct lxbsm_config)
#define LXBSM_IOC_HOOK_INFO	_IOWR(LXBSM_IOC_MAGIC, 5, struct lxbsm_hook_info)
#define LXBSM_IOC_SET_EXEC_RULES _IOW(LXBSM_IOC_MAGIC, 6, struct lxbsm_xc_config)
#define LXBSM_IOC_GET_EXEC_RULES _IOWR(LXBSM_IOC_MAGIC, 7, struct lxbsm_xc_config)
#define LXBSM_IOC_FILE_ID	_IOWR(LXBSM_IOC_MAGIC, 8, struct lxbsm_file_id)
#define LXBSM_IOC_COPY		_IOWR(LXBSM_IOC_MAGIC, 9, struct lxbsm_copy)
#define LXBSM_IOC_HOOK_COST	_IOWR(LXBSM_IOC_MAGIC, 10, struct lxbsm_hook_cost)
#define LXBSM_IOC_SET_PROTECT	_IOW(LXBSM_IOC_MAGIC, 11, struct lxbsm_protect)
#define LXBSM_IOC_PROTECT_STATUS _IOR(LXBSM_IOC_MAGIC, 12, struct lxbsm_protect_status)

#endif /* _UAPI_LXBSM_H */
