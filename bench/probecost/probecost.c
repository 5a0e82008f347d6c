// SPDX-License-Identifier: GPL-2.0
/*
 * probecost: empty probes on kernel functions, so that a benchmark can
 * measure what merely entering a hook costs, per kind of probe (kprobe,
 * kretprobe, fprobe with and without an exit handler), apart from any
 * handler's work.  A measuring aid for bench/probe_cost.py, never loaded
 * beside lxbsm.
 *
 *   insmod probecost.ko kind=kprobe|fprobe entry=SYM[,SYM] both=SYM[,SYM]
 *
 * entry: probed at entry only (kprobe; fprobe without an exit handler);
 * both: at entry and at return (kretprobe; fprobe with an exit handler).
 */
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#ifdef PROBECOST_FPROBE
#include <linux/fprobe.h>
#endif

#define MAX_SYMS	8

static char *kind = "kprobe";
module_param(kind, charp, 0444);
MODULE_PARM_DESC(kind, "kprobe (kprobes and kretprobes) or fprobe");
static char *entry = "";
module_param(entry, charp, 0444);
MODULE_PARM_DESC(entry, "functions probed at entry only, comma-separated");
static char *both = "";
module_param(both, charp, 0444);
MODULE_PARM_DESC(both, "functions probed at entry and return, comma-separated");

struct probe {
	char sym[KSYM_NAME_LEN];
	bool ret;
	bool registered;
	struct kprobe kp;
	struct kretprobe krp;
#ifdef PROBECOST_FPROBE
	struct fprobe fp;
#endif
};

static struct probe probes[MAX_SYMS];
static int nr_probes;

static int kp_pre(struct kprobe *p, struct pt_regs *regs)
{
	return 0;
}
NOKPROBE_SYMBOL(kp_pre);

static int krp_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	return 0;
}
NOKPROBE_SYMBOL(krp_entry);

static int krp_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	return 0;
}
NOKPROBE_SYMBOL(krp_ret);

/*
 * PROBECOST_FPROBE: build.sh found that these handlers compile against the
 * kernel's fprobe API (the one of 6.5 to 6.13: pt_regs, ret_ip, entry data).
 */
#ifdef PROBECOST_FPROBE
#define HAVE_FPROBE 1
static int fp_entry(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
		    struct pt_regs *regs, void *data)
{
	return 0;
}
NOKPROBE_SYMBOL(fp_entry);

static void fp_exit(struct fprobe *fp, unsigned long ip, unsigned long ret_ip,
		    struct pt_regs *regs, void *data)
{
}
NOKPROBE_SYMBOL(fp_exit);
#else
#define HAVE_FPROBE 0
#endif

static int add_syms(char *list, bool ret)
{
	char *s;

	while ((s = strsep(&list, ",")) != NULL) {
		if (!*s)
			continue;
		if (nr_probes == MAX_SYMS)
			return -E2BIG;
		strscpy(probes[nr_probes].sym, s, KSYM_NAME_LEN);
		probes[nr_probes].ret = ret;
		nr_probes++;
	}
	return 0;
}

static int register_one(struct probe *p, bool fprobe)
{
#if HAVE_FPROBE
	if (fprobe) {
		const char *syms[1] = { p->sym };

		p->fp.entry_handler = fp_entry;
		if (p->ret)
			p->fp.exit_handler = fp_exit;
		return register_fprobe_syms(&p->fp, syms, 1);
	}
#endif
	if (p->ret) {
		p->krp.kp.symbol_name = p->sym;
		p->krp.entry_handler = krp_entry;
		p->krp.handler = krp_ret;
		p->krp.maxactive = 64;
		return register_kretprobe(&p->krp);
	}
	p->kp.symbol_name = p->sym;
	p->kp.pre_handler = kp_pre;
	return register_kprobe(&p->kp);
}

static void unregister_one(struct probe *p, bool fprobe)
{
	if (!p->registered)
		return;
#if HAVE_FPROBE
	if (fprobe) {
		unregister_fprobe(&p->fp);
		return;
	}
#endif
	if (p->ret)
		unregister_kretprobe(&p->krp);
	else
		unregister_kprobe(&p->kp);
}

static bool use_fprobe;

static void unregister_all(void)
{
	int i;

	for (i = 0; i < nr_probes; i++)
		unregister_one(&probes[i], use_fprobe);
}

static int __init probecost_init(void)
{
	char *e, *b;
	int i, ret;

	if (!strcmp(kind, "fprobe")) {
		if (!HAVE_FPROBE) {
			pr_err("probecost: no fprobe in this kernel (or its API is not this module's)\n");
			return -EOPNOTSUPP;
		}
		use_fprobe = true;
	} else if (strcmp(kind, "kprobe")) {
		pr_err("probecost: kind is kprobe or fprobe, not %s\n", kind);
		return -EINVAL;
	}
	e = kstrdup(entry, GFP_KERNEL);
	b = kstrdup(both, GFP_KERNEL);
	ret = (e && b) ? 0 : -ENOMEM;
	if (!ret)
		ret = add_syms(e, false);
	if (!ret)
		ret = add_syms(b, true);
	kfree(e);
	kfree(b);
	if (ret)
		return ret;
	for (i = 0; i < nr_probes; i++) {
		ret = register_one(&probes[i], use_fprobe);
		if (ret) {
			pr_err("probecost: cannot probe %s: %d\n", probes[i].sym, ret);
			unregister_all();
			return ret;
		}
		probes[i].registered = true;
	}
	pr_info("probecost: %d empty %s probes\n", nr_probes, kind);
	return 0;
}

static void __exit probecost_exit(void)
{
	unregister_all();
}

module_init(probecost_init);
module_exit(probecost_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("empty probes, to measure what entering a hook costs");
