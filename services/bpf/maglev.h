/* Picking a backend for a new flow from outside by its frontend's Maglev
 * table (lb.h). The hash covers what every node sees alike for a flow:
 * the client's address and port, the frontend port and the protocol, not
 * the frontend address, which differs from node to node for a NodePort.
 * It only has to spread flows and be the same everywhere, so a plain
 * multiply-xorshift mix of 32-bit words does. */
#ifndef NETLET_MAGLEV_H
#define NETLET_MAGLEV_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb.h"
#include "maps.h"

static __always_inline __u32 maglev_mix(__u32 h, __u32 word)
{
	h ^= word;
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 maglev_hash4(const struct ct4_key *key)
{
	__u32 h = maglev_mix(0x6e65746c, key->saddr);

	h = maglev_mix(h, ((__u32)key->sport << 16) | key->dport);
	return maglev_mix(h, key->proto);
}

static __always_inline __u32 maglev_hash6(const struct ct6_key *key)
{
	const __u32 *a = (const __u32 *)key->saddr;
	__u32 h = 0x6e65746c;

	for (int i = 0; i < 4; i++)
		h = maglev_mix(h, a[i]);
	h = maglev_mix(h, ((__u32)key->sport << 16) | key->dport);
	return maglev_mix(h, key->proto);
}

/* The backend id for a flow of hash `hash` to the frontend whose slot 0
 * is `svc`; 0 when it has no table (then the caller picks at random). */
static __always_inline __u32 maglev_backend(const struct lb_slot *svc, __u32 hash)
{
	__u32 table_id = svc->backend_id;
	struct lb_maglev *table;
	__u32 at = hash % LB_MAGLEV_SIZE;

	if (!table_id)
		return 0;
	table = bpf_map_lookup_elem(&nl_lb_maglev, &table_id);
	/* The verifier cannot bound a remainder, and clang drops a check it
	 * knows holds: hide the value from clang so the check stays. */
	asm volatile("" : "+r"(at));
	if (!table || at >= LB_MAGLEV_SIZE)
		return 0;
	return table->backend_ids[at];
}

#endif
