/* What the agent learns about enforcement: per-veth and per-policy
 * counters (per CPU, so no atomics), and sampled drop events through the
 * nl_pol_drops ring buffer. Nothing here is logged per packet. */
#ifndef NETLET_POLICY_REPORT_H
#define NETLET_POLICY_REPORT_H

#include <linux/pkt_cls.h>
#include "judge.h"
#include "parse.h"

/* Counts a new flow allowed, or a packet dropped, on `ifindex`. */
static __always_inline void count_endpoint(__u32 ifindex, __u8 direction, int allowed)
{
	struct pol_endpoint_counters *c = bpf_map_lookup_elem(&nl_pol_ep_cnt, &ifindex);

	if (!c) {
		struct pol_endpoint_counters zero = {};

		bpf_map_update_elem(&nl_pol_ep_cnt, &ifindex, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&nl_pol_ep_cnt, &ifindex);
		if (!c)
			return;
	}
	if (allowed)
		c->allowed[direction & 1]++;
	else
		c->denied[direction & 1]++;
}

static __always_inline void count_policy(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&nl_pol_slot_cnt, &slot);

	if (n)
		(*n)++;
}

/* Whether this CPU may send another drop event in the current second. */
static __always_inline int event_budget(void)
{
	__u32 zero = 0;
	struct pol_event_budget *b = bpf_map_lookup_elem(&nl_pol_budget, &zero);
	__u64 now = bpf_ktime_get_ns();

	if (!b)
		return 0;
	if (now - b->window_ns >= 1000000000ull) {
		b->window_ns = now;
		b->sent = 0;
	}
	if (b->sent >= POL_DROP_EVENTS_PER_SEC)
		return 0;
	b->sent++;
	return 1;
}

static __always_inline void send_drop_event(struct __sk_buff *skb, const struct packet *p, __u8 direction,
					    __u8 reason, __u32 local_identity)
{
	struct pol_drop_event *e;

	if (!event_budget())
		return;
	/* A full ring loses the event, never the verdict. */
	e = bpf_ringbuf_reserve(&nl_pol_drops, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->timestamp_ns = bpf_ktime_get_ns();
	e->ifindex = skb->ifindex;
	e->local_identity = local_identity;
	if (p->family)
		e->remote_identity = classify(direction == POL_DIR_EGRESS ? p->flow.daddr : p->flow.saddr).identity;
	__builtin_memcpy(e->saddr, p->flow.saddr, 16);
	__builtin_memcpy(e->daddr, p->flow.daddr, 16);
	e->sport = p->flow.sport;
	e->dport = p->flow.dport;
	e->proto = p->flow.proto;
	e->family = p->family;
	e->direction = direction;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
}

/* Drops the packet, counting it and telling the agent why. */
static __always_inline int drop(struct __sk_buff *skb, const struct packet *p, __u8 direction, __u8 reason,
				__u32 local_identity)
{
	count_endpoint(skb->ifindex, direction, 0);
	send_drop_event(skb, p, direction, reason, local_identity);
	return TC_ACT_SHOT;
}

#endif
