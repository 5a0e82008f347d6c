// SPDX-License-Identifier: GPL-2.0
/*
 * lxbsm: BSM audit records from the Linux kernel.
 *
 * This file owns the module's life cycle and /dev/lxbsm: open (control or
 * consumer), mmap and poll of the record ring, and the ioctls.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "later.h"
#include "lxbsm.h"
#include "pool.h"
#include "protect.h"
#include "xctl.h"

static unsigned int ring_size_kb = 16384;
module_param(ring_size_kb, uint, 0444);
MODULE_PARM_DESC(ring_size_kb,
		 "Ring data area in KiB (rounded up to a power of two, min 64; default 16384)");

#ifdef LXBSM_DEBUG_FAULTS
/*
 * Built only by the harness self-test (-DLXBSM_DEBUG_FAULTS): a deliberate
 * heap overflow, which a guest booted with memory-error detection (lxbsm-vm
 * --memcheck) must report, failing the run.
 */
static bool debug_overflow;
module_param(debug_overflow, bool, 0444);
MODULE_PARM_DESC(debug_overflow, "Debug builds only: write one byte past a kmalloc buffer at load");

static void lxbsm_debug_faults(void)
{
	size_t n = 64;
	u8 *p;

	if (!debug_overflow)
		return;
	p = kmalloc(n, GFP_KERNEL);
	if (!p)
		return;
	/* Hidden from the compiler, which would otherwise refuse the bug. */
	OPTIMIZER_HIDE_VAR(n);
	WRITE_ONCE(p[n], 0x5a);	/* one past the end: into the red zone */
	kfree(p);
}
#else
static void lxbsm_debug_faults(void)
{
}
#endif

struct lxbsm_ring lxbsm_ring;
static atomic_t consumer_claimed = ATOMIC_INIT(0);
static atomic64_t submitted = ATOMIC64_INIT(0);

/* A file opened for writing is the consumer: it may map and poll the ring. */
static bool is_consumer(const struct file *f)
{
	return f->f_mode & FMODE_WRITE;
}

static int lxbsm_open(struct inode *inode, struct file *f)
{
	if (is_consumer(f)) {
		if (!capable(CAP_AUDIT_READ))
			return -EPERM;
		if (atomic_cmpxchg(&consumer_claimed, 0, 1) != 0)
			return -EBUSY;
		/* The daemon (this thread group, not its number) is never subject to exec control. */
		lxbsm_xc_set_consumer(get_pid(task_tgid(current)));
	} else if (!capable(CAP_AUDIT_CONTROL) && !capable(CAP_AUDIT_WRITE)) {
		return -EPERM;
	}
	return nonseekable_open(inode, f);
}

static int lxbsm_release(struct inode *inode, struct file *f)
{
	if (is_consumer(f)) {
		lxbsm_xc_set_consumer(NULL);
		atomic_set(&consumer_claimed, 0);
	}
	return 0;
}

static int lxbsm_mmap(struct file *f, struct vm_area_struct *vma)
{
	if (!is_consumer(f))
		return -EACCES;
	return lxbsm_ring_mmap(&lxbsm_ring, vma);
}

static __poll_t lxbsm_poll(struct file *f, poll_table *pt)
{
	if (!is_consumer(f))
		return EPOLLERR;
	return lxbsm_ring_poll(&lxbsm_ring, f, pt);
}

static long lxbsm_ioctl_status(void __user *arg)
{
	struct lxbsm_status *st;
	long ret = 0;

	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!st)
		return -ENOMEM;
	st->abi_version = LXBSM_ABI_VERSION;
	st->struct_size = sizeof(*st);
	strscpy(st->version, LXBSM_VERSION, sizeof(st->version));
	st->page_size = PAGE_SIZE;
	lxbsm_ring_status(&lxbsm_ring, st);
	st->submitted = atomic64_read(&submitted);
	st->consumer_open = atomic_read(&consumer_claimed);
	st->table_entries = lxbsm_proc_count();
	st->table_alloc_failed = atomic64_read(&lxbsm_proc_alloc_failed);
	st->waited = lxbsm_record_waited();
	st->can_wait = lxbsm_record_can_wait();
	lxbsm_hooks_missed(st);
	if (copy_to_user(arg, st, sizeof(*st)))
		ret = -EFAULT;
	kfree(st);
	return ret;
}

/* Is @rec one whole BSM record: header .. trailer, both counting @len bytes? */
static bool bsm_record_valid(const u8 *rec, u32 len)
{
	const u8 *trl = rec + len - 7;

	switch (rec[0]) {
	case 0x14:	/* header32 */
	case 0x15:	/* header32_ex */
	case 0x74:	/* header64 */
	case 0x79:	/* header64_ex */
		break;
	default:
		return false;
	}
	return get_unaligned_be32(rec + 1) == len && trl[0] == 0x13 &&
	       get_unaligned_be16(trl + 1) == 0xb105 &&
	       get_unaligned_be32(trl + 3) == len;
}

/*
 * The text token the module puts before the trailer of every submitted
 * record: who submitted it, as the kernel knows it.  A record the module
 * made itself never carries it, and a submitter cannot remove it.
 */
static u32 submitter_text(char *text, size_t size)
{
	struct lxbsm_proc_snap snap;
	const struct cred *cred = current_cred();
	int n;

	lxbsm_proc_snapshot(current, &snap);
	n = snprintf(text, size, "%s pid %d auid %u ruid %u euid %u", LXBSM_SUBMITTED_TEXT,
		     task_tgid_nr(current), snap.auid, lxbsm_uid(cred->uid),
		     lxbsm_uid(cred->euid));
	return min_t(u32, n, size - 1) + 1;	/* with its NUL */
}

static long lxbsm_ioctl_submit(struct file *f, void __user *arg)
{
	struct lxbsm_submit req;
	char text[LXBSM_SUBMITTED_TEXT_MAX];
	u32 tlen, len;
	u8 *rec;
	long ret;

	if (!file_ns_capable(f, &init_user_ns, CAP_AUDIT_WRITE))
		return -EPERM;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.len < 18 + 7 || req.len > LXBSM_MAX_SUBMIT)
		return -EINVAL;
	tlen = submitter_text(text, sizeof(text));
	len = req.len + 3 + tlen;
	/* One copy of the caller's bytes, checked and used where they landed. */
	rec = kmalloc(len, GFP_KERNEL);
	if (!rec)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(rec, u64_to_user_ptr(req.buf), req.len))
		goto out;
	ret = -EINVAL;
	if (!bsm_record_valid(rec, req.len))
		goto out;
	/* The trailer moves behind the submitter's text; both counts grow. */
	rec[req.len - 7] = 0x28;	/* text */
	put_unaligned_be16(tlen, rec + req.len - 6);
	memcpy(rec + req.len - 4, text, tlen);
	rec[len - 7] = 0x13;		/* trailer */
	put_unaligned_be16(0xb105, rec + len - 6);
	put_unaligned_be32(len, rec + len - 4);
	put_unaligned_be32(len, rec + 1);
	ret = lxbsm_ring_write(&lxbsm_ring, rec, len, LXBSM_REC_BSM);
	if (!ret)
		atomic64_inc(&submitted);
out:
	kfree(rec);
	return ret;
}

static long lxbsm_ioctl_hook_info(void __user *arg)
{
	struct lxbsm_hook_info info;
	int ret;

	if (copy_from_user(&info, arg, sizeof(info)))
		return -EFAULT;
	ret = lxbsm_hook_info(&info);
	if (ret)
		return ret;
	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long lxbsm_ioctl_hook_cost(void __user *arg)
{
	struct lxbsm_hook_cost cost;
	int ret;

	if (copy_from_user(&cost, arg, sizeof(cost)))
		return -EFAULT;
	ret = lxbsm_hook_cost(&cost);
	if (ret)
		return ret;
	return copy_to_user(arg, &cost, sizeof(cost)) ? -EFAULT : 0;
}

static long lxbsm_ioctl_copy(struct file *f, void __user *arg)
{
	struct lxbsm_copy req;
	int ret;

	if (!is_consumer(f))
		return -EACCES;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	ret = lxbsm_ring_copy(&lxbsm_ring, &req);
	if (ret)
		return ret;
	return copy_to_user(arg, &req, sizeof(req)) ? -EFAULT : 0;
}

/* Changing what the module does takes CAP_AUDIT_CONTROL in the opener. */
static long may_control(struct file *f)
{
	return file_ns_capable(f, &init_user_ns, CAP_AUDIT_CONTROL) ? 0 : -EPERM;
}

/* Reading its state: the same, or the consumer (CAP_AUDIT_READ at open). */
static long may_read(struct file *f)
{
	return is_consumer(f) ? 0 : may_control(f);
}

static long lxbsm_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case LXBSM_IOC_STATUS:
		return may_read(f) ?: lxbsm_ioctl_status(uarg);
	case LXBSM_IOC_SUBMIT:
		return lxbsm_ioctl_submit(f, uarg);
	case LXBSM_IOC_SET_CONFIG:
		return may_control(f) ?: lxbsm_cfg_set(uarg);
	case LXBSM_IOC_GET_CONFIG:
		return may_read(f) ?: lxbsm_cfg_get(uarg);
	case LXBSM_IOC_HOOK_INFO:
		return may_read(f) ?: lxbsm_ioctl_hook_info(uarg);
	case LXBSM_IOC_HOOK_COST:
		return may_read(f) ?: lxbsm_ioctl_hook_cost(uarg);
	case LXBSM_IOC_SET_EXEC_RULES:
		return may_control(f) ?: lxbsm_xc_set(uarg);
	case LXBSM_IOC_GET_EXEC_RULES:
		return may_read(f) ?: lxbsm_xc_get(uarg);
	case LXBSM_IOC_FILE_ID:
		return may_read(f) ?: lxbsm_xc_file_id(uarg);
	case LXBSM_IOC_COPY:
		return lxbsm_ioctl_copy(f, uarg);
	case LXBSM_IOC_SET_PROTECT:
		return may_control(f) ?: lxbsm_protect_set(uarg);
	case LXBSM_IOC_PROTECT_STATUS:
		return may_read(f) ?: lxbsm_protect_status(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations lxbsm_fops = {
	.owner		= THIS_MODULE,
	.open		= lxbsm_open,
	.release	= lxbsm_release,
	.mmap		= lxbsm_mmap,
	.poll		= lxbsm_poll,
	.unlocked_ioctl	= lxbsm_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice lxbsm_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= LXBSM_DEVICE,
	.fops	= &lxbsm_fops,
	.mode	= 0600,
	.groups	= lxbsm_xc_groups,
};

static int __init lxbsm_init(void)
{
	size_t size;
	int ret;

	ret = lxbsm_d_path_selftest();
	if (ret)
		return ret;
	ret = lxbsm_pools_init();
	if (ret)
		return ret;
	size = roundup_pow_of_two(max_t(size_t, ring_size_kb, 64) * (size_t)SZ_1K);
	ret = lxbsm_ring_init(&lxbsm_ring, size);
	if (ret) {
		pr_err("cannot allocate a %zu KiB ring: %d\n", size >> 10, ret);
		goto err_pools;
	}
	ret = lxbsm_cfg_init();
	if (ret)
		goto err_ring;
	ret = lxbsm_proc_init();
	if (ret)
		goto err_cfg;
	ret = lxbsm_record_init();
	if (ret)
		goto err_proc;
	ret = misc_register(&lxbsm_misc);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", LXBSM_DEVICE, ret);
		goto err_record;
	}
	/* Last: from here on, records flow. */
	ret = lxbsm_hooks_init();
	if (ret)
		goto err_misc;
	lxbsm_debug_faults();
#ifdef LXBSM_FAULT_WARN_AT_LOAD
	/* Built only by the harness self-test: a module that must fail. */
	WARN_ON(1);
#endif
	if (!lxbsm_record_can_wait())
		pr_info("this kernel does not export task_work_add: without policy cnt, records the ring cannot take are counted as lost, as with cnt\n");
	pr_info("version %s loaded, ring %zu KiB\n", LXBSM_VERSION, size >> 10);
	return 0;

err_misc:
	lxbsm_later_quiesce();
	lxbsm_protect_exit();
	misc_deregister(&lxbsm_misc);
err_record:
	lxbsm_record_exit();
err_proc:
	lxbsm_proc_exit();
	lxbsm_xc_exit();
err_cfg:
	lxbsm_cfg_exit();
err_ring:
	lxbsm_ring_destroy(&lxbsm_ring);
err_pools:
	lxbsm_pools_exit();
	return ret;
}

static void __exit lxbsm_exit(void)
{
	/* First stop every producer; no handler runs once this returns. */
	lxbsm_hooks_exit();
	/*
	 * Then every process about to record a connect, hash a file or write
	 * a record.
	 */
	lxbsm_later_quiesce();
	lxbsm_protect_exit();
	/*
	 * fops.owner pins the module while /dev/lxbsm is open or mapped, so
	 * no file can reach the ring once the device is gone.
	 */
	misc_deregister(&lxbsm_misc);
	lxbsm_record_exit();
	lxbsm_proc_exit();
	lxbsm_xc_exit();
	lxbsm_cfg_exit();
	lxbsm_ring_destroy(&lxbsm_ring);
	/* Last: every object is back (proc entries after rcu_barrier()). */
	lxbsm_pools_exit();
	pr_info("unloaded\n");
}

module_init(lxbsm_init);
module_exit(lxbsm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The lxbsm developers");
MODULE_DESCRIPTION("BSM audit records from the Linux kernel");
MODULE_VERSION(LXBSM_VERSION);
