/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lxbsm ring: one multi-producer, single-consumer ring of variable-size
 * records, shared with user space by mmap (layout in uapi/lxbsm.h).
 */
#ifndef LXBSM_RING_H
#define LXBSM_RING_H

#include <linux/irq_work.h>
#include <linux/mm_types.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "include/uapi/lxbsm.h"

struct lxbsm_ring {
	/* Producers serialise on this lock for reservation only. */
	raw_spinlock_t lock ____cacheline_aligned_in_smp;
	u64 pending_pos;		/* oldest record maybe still BUSY */
	u64 high_water;
	u64 mask;			/* data_size - 1 */
	void *base;			/* vmap: consumer, producer, data, data */
	struct lxbsm_consumer_page *cons;
	struct lxbsm_producer_page *prod;
	u8 *data;
	struct page **pages;		/* distinct pages: 2 + data pages */
	unsigned int nr_pages;
	unsigned int map_pages;		/* pages in the vmap, data counted twice */
	wait_queue_head_t waitq;
	struct irq_work wakeup;
};

int lxbsm_ring_init(struct lxbsm_ring *r, size_t data_size);
void lxbsm_ring_destroy(struct lxbsm_ring *r);

/*
 * What a producer stamps on its record in ring order (record.c: time and
 * sequence number): take() runs under the producer lock once room is
 * reserved, so stamps follow the order of the ring; apply() writes them into
 * the copy in the ring before it is committed.
 */
struct lxbsm_ring_stamp {
	void (*take)(struct lxbsm_ring_stamp *s);
	void (*apply)(const struct lxbsm_ring_stamp *s, void *rec, u32 size);
};

/*
 * Reserve room for a payload of @size bytes; NULL if there is none, counted
 * as lost unless @quiet (a caller that will try again).  @stamp may be NULL.
 */
void *__lxbsm_ring_reserve(struct lxbsm_ring *r, u32 size, u32 type, bool quiet,
			   struct lxbsm_ring_stamp *stamp);

static inline void *lxbsm_ring_reserve(struct lxbsm_ring *r, u32 size, u32 type)
{
	return __lxbsm_ring_reserve(r, size, type, false, NULL);
}

void lxbsm_ring_commit(struct lxbsm_ring *r, void *rec);
void lxbsm_ring_discard(struct lxbsm_ring *r, void *rec);
/* Count a record lost before it reached the ring. */
void lxbsm_ring_lost(struct lxbsm_ring *r, enum lxbsm_lost_reason why);
void lxbsm_ring_lost_n(struct lxbsm_ring *r, enum lxbsm_lost_reason why, u64 n);
/* Reserve, copy and commit in one call (process or atomic context). */
int lxbsm_ring_write(struct lxbsm_ring *r, const void *buf, u32 size, u32 type);
/* The same, stamped (may be NULL), and a full ring is not counted as a loss. */
int lxbsm_ring_try_write(struct lxbsm_ring *r, const void *buf, u32 size, u32 type,
			 struct lxbsm_ring_stamp *stamp);

/* LXBSM_IOC_COPY, in the consumer's process context (it copies to user space). */
int lxbsm_ring_copy(struct lxbsm_ring *r, struct lxbsm_copy *req);
__poll_t lxbsm_ring_poll(struct lxbsm_ring *r, struct file *f, poll_table *pt);
int lxbsm_ring_mmap(struct lxbsm_ring *r, struct vm_area_struct *vma);
void lxbsm_ring_status(struct lxbsm_ring *r, struct lxbsm_status *st);

#endif /* LXBSM_RING_H */
