// SPDX-License-Identifier: GPL-2.0
/*
 * lxbsm ring buffer.
 *
 * The design follows the BPF ring buffer: positions grow without bound and
 * are masked to index the data area; the data pages are mapped twice in a
 * row so a record that crosses the end stays contiguous for the kernel and
 * for user space; producers reserve space under a raw spinlock (a few
 * instructions) and fill their record outside it; a BUSY bit in the record
 * header tells the consumer where committed data ends.  Wakeups go through
 * irq_work, so producers in any context never touch the wait queue lock.
 */
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "ring.h"

#define HDR_SIZE	sizeof(struct lxbsm_rec_hdr)

static void lxbsm_ring_wakeup(struct irq_work *work)
{
	struct lxbsm_ring *r = container_of(work, struct lxbsm_ring, wakeup);

	wake_up_all(&r->waitq);
}

int lxbsm_ring_init(struct lxbsm_ring *r, size_t data_size)
{
	unsigned int nr_data, i;
	struct page **map;

	if (data_size < 16 * PAGE_SIZE || !is_power_of_2(data_size))
		return -EINVAL;
	nr_data = data_size >> PAGE_SHIFT;
	r->nr_pages = 2 + nr_data;
	r->map_pages = 2 + 2 * nr_data;

	r->pages = kvcalloc(r->nr_pages, sizeof(*r->pages), GFP_KERNEL);
	if (!r->pages)
		return -ENOMEM;
	map = kvcalloc(r->map_pages, sizeof(*map), GFP_KERNEL);
	if (!map)
		goto err_pages;
	for (i = 0; i < r->nr_pages; i++) {
		r->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN);
		if (!r->pages[i])
			goto err_alloc;
	}
	map[0] = r->pages[0];
	map[1] = r->pages[1];
	for (i = 0; i < nr_data; i++) {
		map[2 + i] = r->pages[2 + i];
		map[2 + nr_data + i] = r->pages[2 + i];
	}
	r->base = vmap(map, r->map_pages, VM_MAP | VM_USERMAP, PAGE_KERNEL);
	kvfree(map);
	map = NULL;
	if (!r->base)
		goto err_alloc;

	r->cons = r->base;
	r->prod = r->base + PAGE_SIZE;
	r->data = r->base + 2 * PAGE_SIZE;
	r->mask = data_size - 1;
	r->pending_pos = 0;
	r->high_water = 0;
	r->prod->data_size = data_size;
	r->prod->abi_version = LXBSM_ABI_VERSION;
	r->prod->hdr_size = HDR_SIZE;
	raw_spin_lock_init(&r->lock);
	init_waitqueue_head(&r->waitq);
	init_irq_work(&r->wakeup, lxbsm_ring_wakeup);
	return 0;

err_alloc:
	kvfree(map);
	for (i = 0; i < r->nr_pages && r->pages[i]; i++)
		__free_page(r->pages[i]);
err_pages:
	kvfree(r->pages);
	r->pages = NULL;
	return -ENOMEM;
}

/* Only after every producer is gone and no mapping or file can reach @r. */
void lxbsm_ring_destroy(struct lxbsm_ring *r)
{
	unsigned int i;

	if (!r->pages)
		return;
	irq_work_sync(&r->wakeup);
	vunmap(r->base);
	for (i = 0; i < r->nr_pages; i++)
		__free_page(r->pages[i]);
	kvfree(r->pages);
	r->pages = NULL;
	r->base = NULL;
}

static inline struct lxbsm_rec_hdr *rec_at(struct lxbsm_ring *r, u64 pos)
{
	return (struct lxbsm_rec_hdr *)(r->data + (pos & r->mask));
}

static inline u64 rec_span(u32 len)
{
	return round_up((u64)(len & LXBSM_REC_LEN_MASK) + HDR_SIZE, 8);
}

void lxbsm_ring_lost_n(struct lxbsm_ring *r, enum lxbsm_lost_reason why, u64 n)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&r->lock, flags);
	WRITE_ONCE(r->prod->lost[why], r->prod->lost[why] + n);
	raw_spin_unlock_irqrestore(&r->lock, flags);
}

void lxbsm_ring_lost(struct lxbsm_ring *r, enum lxbsm_lost_reason why)
{
	lxbsm_ring_lost_n(r, why, 1);
}

void *__lxbsm_ring_reserve(struct lxbsm_ring *r, u32 size, u32 type, bool quiet,
			   struct lxbsm_ring_stamp *stamp)
{
	struct lxbsm_rec_hdr *hdr;
	u64 cons, prod, pend, new_prod, span;
	unsigned long flags;

	span = round_up((u64)size + HDR_SIZE, 8);
	if (size > LXBSM_REC_LEN_MASK || span > (r->mask + 1) / 4) {
		lxbsm_ring_lost(r, LXBSM_LOST_TOO_BIG);
		return NULL;
	}

	/* The consumer's position is user memory: used for arithmetic only. */
	cons = smp_load_acquire(&r->cons->consumer_pos);

	raw_spin_lock_irqsave(&r->lock, flags);
	prod = r->prod->producer_pos;
	pend = r->pending_pos;
	while (pend < prod) {
		/* Pairs with the release that clears BUSY in lxbsm_ring_finish(). */
		u32 len = smp_load_acquire(&rec_at(r, pend)->len);

		if (len & LXBSM_REC_BUSY)
			break;
		pend += rec_span(len);
	}
	r->pending_pos = pend;

	new_prod = prod + span;
	if (new_prod - cons > r->mask || new_prod - pend > r->mask) {
		if (!quiet)
			WRITE_ONCE(r->prod->lost[LXBSM_LOST_RING_FULL],
				   r->prod->lost[LXBSM_LOST_RING_FULL] + 1);
		raw_spin_unlock_irqrestore(&r->lock, flags);
		return NULL;
	}

	hdr = rec_at(r, prod);
	hdr->len = size | LXBSM_REC_BUSY;
	hdr->type = type;
	WRITE_ONCE(r->prod->records, r->prod->records + 1);
	WRITE_ONCE(r->prod->bytes, r->prod->bytes + size);
	if (new_prod - cons > r->high_water)
		r->high_water = new_prod - cons;
	if (stamp)
		stamp->take(stamp);
	/* Publish the reservation; its BUSY bit keeps the consumer out. */
	smp_store_release(&r->prod->producer_pos, new_prod);
	raw_spin_unlock_irqrestore(&r->lock, flags);

	return hdr + 1;
}

static void lxbsm_ring_finish(struct lxbsm_ring *r, void *rec, u32 flag)
{
	struct lxbsm_rec_hdr *hdr = (struct lxbsm_rec_hdr *)rec - 1;
	u64 rec_pos, cons;
	u32 len = hdr->len & LXBSM_REC_LEN_MASK;

	/*
	 * Clear BUSY.  xchg() is a full barrier: the payload is visible before
	 * the flag clears, and the clear is ordered before the consumer_pos
	 * load below (a release store alone could pass that load).
	 */
	xchg(&hdr->len, len | flag);

	/*
	 * Wake the reader only if it has caught up with this record, i.e. it
	 * may be sleeping on it; otherwise it will reach it on its own.
	 */
	rec_pos = (u8 *)hdr - r->data;
	/* Pairs with the reader's store of its position. */
	cons = smp_load_acquire(&r->cons->consumer_pos) & r->mask;
	if (cons == rec_pos)
		irq_work_queue(&r->wakeup);
}

void lxbsm_ring_commit(struct lxbsm_ring *r, void *rec)
{
	lxbsm_ring_finish(r, rec, 0);
}

void lxbsm_ring_discard(struct lxbsm_ring *r, void *rec)
{
	lxbsm_ring_finish(r, rec, LXBSM_REC_DISCARD);
}

static int ring_write(struct lxbsm_ring *r, const void *buf, u32 size, u32 type, bool quiet,
		      struct lxbsm_ring_stamp *stamp)
{
	void *rec = __lxbsm_ring_reserve(r, size, type, quiet, stamp);

	if (!rec)
		return -ENOSPC;
	memcpy(rec, buf, size);
	if (stamp)
		stamp->apply(stamp, rec, size);
	lxbsm_ring_commit(r, rec);
	return 0;
}

int lxbsm_ring_write(struct lxbsm_ring *r, const void *buf, u32 size, u32 type)
{
	return ring_write(r, buf, size, type, false, NULL);
}

int lxbsm_ring_try_write(struct lxbsm_ring *r, const void *buf, u32 size, u32 type,
			 struct lxbsm_ring_stamp *stamp)
{
	return ring_write(r, buf, size, type, true, stamp);
}

int lxbsm_ring_copy(struct lxbsm_ring *r, struct lxbsm_copy *req)
{
	u8 __user *buf = u64_to_user_ptr(req->buf);
	u64 pos, prod, max_len = (r->mask + 1) / 4;
	u32 records = 0;
	u64 bytes = 0;

	/* Pairs with the reader's store of its position. */
	pos = smp_load_acquire(&r->cons->consumer_pos);
	/* Pairs with the release that publishes a reservation. */
	prod = smp_load_acquire(&r->prod->producer_pos);
	/* consumer_pos is user memory: check it before walking from it. */
	if (pos & 7 || prod - pos > r->mask + 1)
		return -EIO;
	while (pos < prod) {
		struct lxbsm_rec_hdr *hdr = rec_at(r, pos);
		/* Pairs with the xchg() that clears BUSY in lxbsm_ring_finish(). */
		u32 word = smp_load_acquire(&hdr->len);
		u32 len = word & LXBSM_REC_LEN_MASK;

		if (word & LXBSM_REC_BUSY)
			break;
		/* Not a record the kernel wrote: pos was not a boundary. */
		if (len > max_len || pos + rec_span(len) > prod)
			return -EIO;
		if (!(word & LXBSM_REC_DISCARD) && hdr->type == LXBSM_REC_BSM) {
			if (bytes + len > req->buf_size) {
				if (!records)
					return -EMSGSIZE;
				break;
			}
			/* The data area is mapped twice: a record that wraps is contiguous. */
			if (copy_to_user(buf + bytes, hdr + 1, len))
				return -EFAULT;
			bytes += len;
			records++;
		}
		pos += rec_span(len);
	}
	req->records = records;
	req->bytes = bytes;
	req->end_pos = pos;
	return 0;
}

__poll_t lxbsm_ring_poll(struct lxbsm_ring *r, struct file *f, poll_table *pt)
{
	poll_wait(f, &r->waitq, pt);
	/* Re-checked after queueing on waitq, so no wakeup is lost. */
	if (smp_load_acquire(&r->prod->producer_pos) != /* vs reserve's release */
	    smp_load_acquire(&r->cons->consumer_pos)) /* vs the reader's store */
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

/*
 * Page 0 (consumer page) may be mapped writable on its own; from page 1 on
 * (producer page and the doubled data area) only read-only, and mprotect()
 * can never make it writable.
 */
int lxbsm_ring_mmap(struct lxbsm_ring *r, struct vm_area_struct *vma)
{
	unsigned long pages = vma_pages(vma);

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_pgoff == 0) {
		if (pages != 1)
			return -EINVAL;
	} else if (vma->vm_pgoff == 1) {
		if (pages > r->map_pages - 1)
			return -EINVAL;
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		lxbsm_vm_flags_clear(vma, VM_MAYWRITE);
	} else {
		return -EINVAL;
	}
	return remap_vmalloc_range(vma, r->base, vma->vm_pgoff);
}

void lxbsm_ring_status(struct lxbsm_ring *r, struct lxbsm_status *st)
{
	unsigned long flags;
	unsigned int i;

	raw_spin_lock_irqsave(&r->lock, flags);
	st->data_size = r->mask + 1;
	st->producer_pos = r->prod->producer_pos;
	st->high_water = r->high_water;
	st->records = r->prod->records;
	st->bytes = r->prod->bytes;
	for (i = 0; i < LXBSM_LOST_NR; i++)
		st->lost[i] = r->prod->lost[i];
	raw_spin_unlock_irqrestore(&r->lock, flags);
	st->consumer_pos = READ_ONCE(r->cons->consumer_pos);
}
