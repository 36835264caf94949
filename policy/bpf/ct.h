/* Connection tracking for policy: a flow is judged on its first packet
 * and remembered, with the hook that judged it, when allowed. Its later
 * packets either way then pass without being judged again, unless the
 * policy revision changed since (see judge.h). */
#ifndef NETLET_POLICY_CT_H
#define NETLET_POLICY_CT_H

#include "map_defs.h"

static __always_inline __u8 other_hook(__u8 hook)
{
	return hook == POL_FROM_POD ? POL_TO_POD : POL_FROM_POD;
}

/* The tuple of the other direction of `t`, as tracked at `origin`. */
static __always_inline void ct_reverse(const struct pol_ct_key *t, struct pol_ct_key *r, __u8 origin)
{
	__builtin_memcpy(r->saddr, t->daddr, 16);
	__builtin_memcpy(r->daddr, t->saddr, 16);
	r->sport = t->dport;
	r->dport = t->sport;
	r->proto = t->proto;
	r->origin = origin;
	r->pad[0] = 0;
	r->pad[1] = 0;
}

/* The tracked flow a packet with tuple `t` belongs to, seen at `hook`:
 * one whose first packet had this tuple at this hook, or one this packet
 * answers, whose first packet went the other way through the other hook.
 * `key` receives the entry's key. */
static __always_inline struct pol_ct_value *ct_find(const struct pol_ct_key *t, __u8 hook, struct pol_ct_key *key)
{
	struct pol_ct_value *v;

	*key = *t;
	key->origin = hook;
	v = bpf_map_lookup_elem(&nl_pol_ct, key);
	if (v)
		return v;
	ct_reverse(t, key, other_hook(hook));
	return bpf_map_lookup_elem(&nl_pol_ct, key);
}

static __always_inline void ct_record(const struct pol_ct_key *t, __u8 hook, __u32 revision, __u32 slot, __u8 flags)
{
	struct pol_ct_key key = *t;
	struct pol_ct_value v;

	key.origin = hook;
	__builtin_memset(&v, 0, sizeof(v));
	v.created_ns = bpf_ktime_get_ns();
	v.revision = revision;
	v.policy_slot = slot;
	v.flags = flags;
	bpf_map_update_elem(&nl_pol_ct, &key, &v, BPF_ANY);
}

#endif
