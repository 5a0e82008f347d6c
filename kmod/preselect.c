// SPDX-License-Identifier: GPL-2.0
/*
 * Pre-selection: which events are audited for which process.
 *
 * The configuration (classes per event, audit_control flags and naflags,
 * audit_user masks by audit id, policy) is one RCU-protected object that the
 * daemon replaces whole through LXBSM_IOC_SET_CONFIG.  A process's mask is
 * BSM's: naflags while it has no audit id, otherwise flags plus the user's
 * "always" classes minus the "never" ones; proc.c caches it per process and
 * recomputes it when the configuration generation changes.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bsearch.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "lxbsm.h"

const u16 lxbsm_event_aue[LXBSM_EV_NR] = {
#define LXBSM_EV_AUE(name, aue, classes) [LXBSM_EV_##name] = aue,
	LXBSM_EVENTS(LXBSM_EV_AUE)
#undef LXBSM_EV_AUE
};

static const u32 default_class[LXBSM_EV_NR] = {
#define LXBSM_EV_CLASS(name, aue, classes) [LXBSM_EV_##name] = classes,
	LXBSM_EVENTS(LXBSM_EV_CLASS)
#undef LXBSM_EV_CLASS
};

struct lxbsm_cfg __rcu *lxbsm_cfg;
static DEFINE_MUTEX(cfg_mutex);
static u64 cfg_gen;

static struct lxbsm_cfg *cfg_alloc(u32 nr_users)
{
	struct lxbsm_cfg *cfg;

	return kvzalloc(struct_size(cfg, users, nr_users), GFP_KERNEL);
}

/* Nothing is audited until the daemon says what to audit. */
int lxbsm_cfg_init(void)
{
	struct lxbsm_cfg *cfg = cfg_alloc(0);

	if (!cfg)
		return -ENOMEM;
	cfg->gen = ++cfg_gen;
	cfg->policy = LXBSM_POLICY_CNT;
	memcpy(cfg->event_class, default_class, sizeof(default_class));
	RCU_INIT_POINTER(lxbsm_cfg, cfg);
	return 0;
}

void lxbsm_cfg_exit(void)
{
	kvfree(rcu_dereference_protected(lxbsm_cfg, true));
	RCU_INIT_POINTER(lxbsm_cfg, NULL);
}

static int cmp_user(const void *a, const void *b)
{
	const struct lxbsm_user_mask *x = a, *y = b;

	return x->auid < y->auid ? -1 : x->auid > y->auid;
}

static int find_event(u32 aue)
{
	int i;

	for (i = 0; i < LXBSM_EV_NR; i++)
		if (lxbsm_event_aue[i] == aue)
			return i;
	return -1;
}

long lxbsm_cfg_set(const struct lxbsm_config __user *ucfg)
{
	struct lxbsm_event_class *events = NULL;
	struct lxbsm_config req;
	struct lxbsm_cfg *cfg, *old;
	u32 i, ev_max = 16 * 65536;
	long ret = 0;

	if (copy_from_user(&req, ucfg, sizeof(req)))
		return -EFAULT;
	if (req.reserved || req.policy & ~LXBSM_POLICY_KNOWN ||
	    req.nr_users > LXBSM_MAX_USERS || req.nr_events > ev_max)
		return -EINVAL;

	cfg = cfg_alloc(req.nr_users);
	if (!cfg)
		return -ENOMEM;
	cfg->policy = req.policy;
	cfg->flags = req.flags;
	cfg->naflags = req.naflags;
	cfg->nr_users = req.nr_users;
	memcpy(cfg->event_class, default_class, sizeof(default_class));

	if (req.nr_events) {
		events = kvmalloc_array(req.nr_events, sizeof(*events), GFP_KERNEL);
		if (!events) {
			ret = -ENOMEM;
			goto out;
		}
		if (copy_from_user(events, u64_to_user_ptr(req.events),
				   array_size(req.nr_events, sizeof(*events)))) {
			ret = -EFAULT;
			goto out;
		}
		/* Like getauevnum(): the first line for a number wins. */
		for (i = req.nr_events; i-- > 0;) {
			int ev = find_event(events[i].event);

			if (ev >= 0)
				cfg->event_class[ev] = events[i].classes;
		}
	}
	if (req.nr_users) {
		if (copy_from_user(cfg->users, u64_to_user_ptr(req.users),
				   array_size(req.nr_users, sizeof(cfg->users[0])))) {
			ret = -EFAULT;
			goto out;
		}
		for (i = 0; i < req.nr_users; i++) {
			if (cfg->users[i].reserved) {
				ret = -EINVAL;
				goto out;
			}
		}
		sort(cfg->users, req.nr_users, sizeof(cfg->users[0]), cmp_user, NULL);
	}

	cfg->any = cfg->flags.success | cfg->flags.failure |
		   cfg->naflags.success | cfg->naflags.failure;
	for (i = 0; i < cfg->nr_users; i++)
		cfg->any |= cfg->users[i].always.success | cfg->users[i].always.failure;

	mutex_lock(&cfg_mutex);
	cfg->gen = ++cfg_gen;
	old = rcu_replace_pointer(lxbsm_cfg, cfg, lockdep_is_held(&cfg_mutex));
	mutex_unlock(&cfg_mutex);
	synchronize_rcu();
	kvfree(old);
	cfg = NULL;
	lxbsm_hooks_arm();
out:
	kvfree(events);
	kvfree(cfg);
	return ret;
}

long lxbsm_cfg_get(struct lxbsm_config __user *ucfg)
{
	struct lxbsm_event_class *events;
	struct lxbsm_config req;
	struct lxbsm_cfg *cfg;
	u32 i, room_ev, room_users;
	long ret = 0;

	if (copy_from_user(&req, ucfg, sizeof(req)))
		return -EFAULT;
	room_ev = req.nr_events;
	room_users = req.nr_users;
	events = kvmalloc_array(LXBSM_EV_NR, sizeof(*events), GFP_KERNEL);
	if (!events)
		return -ENOMEM;

	mutex_lock(&cfg_mutex);
	cfg = rcu_dereference_protected(lxbsm_cfg, lockdep_is_held(&cfg_mutex));
	for (i = 0; i < LXBSM_EV_NR; i++) {
		events[i].event = lxbsm_event_aue[i];
		events[i].classes = cfg->event_class[i];
	}
	req.policy = cfg->policy;
	req.flags = cfg->flags;
	req.naflags = cfg->naflags;
	req.nr_events = LXBSM_EV_NR;
	req.nr_users = cfg->nr_users;
	if (req.events && copy_to_user(u64_to_user_ptr(req.events), events,
				       array_size(min_t(u32, room_ev, LXBSM_EV_NR),
						  sizeof(*events))))
		ret = -EFAULT;
	if (!ret && req.users &&
	    copy_to_user(u64_to_user_ptr(req.users), cfg->users,
			 array_size(min(room_users, cfg->nr_users), sizeof(cfg->users[0]))))
		ret = -EFAULT;
	mutex_unlock(&cfg_mutex);
	kvfree(events);
	if (!ret && copy_to_user(ucfg, &req, sizeof(req)))
		ret = -EFAULT;
	return ret;
}

static int cmp_auid(const void *key, const void *elt)
{
	u32 auid = *(const u32 *)key;
	const struct lxbsm_user_mask *u = elt;

	return auid < u->auid ? -1 : auid > u->auid;
}

/* BSM's process mask for an audit id (AU_DEFAUDITID = none: naflags). */
struct lxbsm_mask lxbsm_mask_for(const struct lxbsm_cfg *cfg, u32 auid)
{
	const struct lxbsm_user_mask *u;
	struct lxbsm_mask m;

	if (auid == (u32)-1)
		return cfg->naflags;
	m = cfg->flags;
	u = bsearch(&auid, cfg->users, cfg->nr_users, sizeof(*u), cmp_auid);
	if (u) {
		m.success = (m.success | u->always.success) & ~u->never.success;
		m.failure = (m.failure | u->always.failure) & ~u->never.failure;
	}
	return m;
}

/* The classes of @ev that some mask may select. */
static u32 classes_of(enum lxbsm_event ev)
{
	const struct lxbsm_cfg *cfg;
	u32 classes;

	rcu_read_lock();
	cfg = rcu_dereference(lxbsm_cfg);
	/* A process's masks hold only bits of cfg->any: the rest cannot select. */
	classes = cfg->event_class[ev] & cfg->any;
	rcu_read_unlock();
	return classes;
}

bool lxbsm_interested(enum lxbsm_event ev, struct lxbsm_sel *sel)
{
	u32 classes = classes_of(ev);

	sel->ev = ev;
	sel->classes = classes;
	if (!classes)
		return false;
	lxbsm_proc_snapshot(current, &sel->proc);
	return classes & (sel->proc.mask.success | sel->proc.mask.failure);
}

bool lxbsm_selected_for(enum lxbsm_event ev, const struct lxbsm_proc_snap *proc, bool failed)
{
	return classes_of(ev) & (failed ? proc->mask.failure : proc->mask.success);
}

bool lxbsm_selected(const struct lxbsm_sel *sel, bool failed)
{
	return sel->classes & (failed ? sel->proc.mask.failure : sel->proc.mask.success);
}
