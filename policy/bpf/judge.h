/* Judging one flow against the policy of the pod behind a veth: the
 * remote address is classified through the ipcache (pod identity, CIDR
 * class), then up to three rule lookups (the remote as a pod, as a
 * class, as anyone) decide; any hit allows. This is verdict.rs in map
 * form, and must agree with it. */
#ifndef NETLET_POLICY_JUDGE_H
#define NETLET_POLICY_JUDGE_H

#include <bpf/bpf_endian.h>
#include "map_defs.h"

static __always_inline __u32 policy_revision(void)
{
	__u32 zero = 0;
	struct pol_config *config = bpf_map_lookup_elem(&nl_pol_config, &zero);

	return config ? config->revision : 0;
}

static __always_inline __u8 direction_of(__u8 hook)
{
	return hook == POL_FROM_POD ? POL_DIR_EGRESS : POL_DIR_INGRESS;
}

/* The far end of a tuple seen at `hook`: the destination of what the pod
 * sends, the source of what it receives. */
static __always_inline const __u8 *remote_of(const struct pol_ct_key *t, __u8 hook)
{
	return hook == POL_FROM_POD ? t->daddr : t->saddr;
}

/* Identity (0: not a pod) and CIDR class of `addr`. */
static __always_inline struct pol_ipcache_value classify(const __u8 *addr)
{
	struct pol_ipcache_key key = {.prefixlen = 128};
	struct pol_ipcache_value none = {}, *found;

	__builtin_memcpy(key.addr, addr, 16);
	found = bpf_map_lookup_elem(&nl_pol_ipcache, &key);
	return found ? *found : none;
}

/* Looks `key` up with `remote`; on a hit, lowers *slot to the rule's. */
static __always_inline int rule_allows(struct pol_rule_key *key, __u32 remote, __u32 *slot)
{
	struct pol_rule_value *rule;

	key->remote = bpf_htonl(remote);
	rule = bpf_map_lookup_elem(&nl_pol_rules, key);
	if (!rule)
		return 0;
	if (rule->policy_slot < *slot)
		*slot = rule->policy_slot;
	return 1;
}

/* Whether `ep`'s policy allows the flow whose first packet was `t` at
 * `hook`: its egress for what the pod sends, its ingress for what it
 * receives, always on the destination port. *slot is the allowing policy
 * (POL_SLOT_NONE when the pod is not isolated that way). */
static __always_inline int judge(const struct pol_endpoint *ep, const struct pol_ct_key *t, __u8 hook, __u32 *slot)
{
	__u8 direction = direction_of(hook);
	__u8 isolated = direction == POL_DIR_EGRESS ? POL_ISOLATED_EGRESS : POL_ISOLATED_INGRESS;
	struct pol_ipcache_value remote;
	struct pol_rule_key key;
	int allowed = 0;

	*slot = POL_SLOT_NONE;
	if (!(ep->flags & isolated))
		return 1;
	remote = classify(remote_of(t, hook));
	key.prefixlen = POL_RULE_FULL_BITS;
	key.local = bpf_htonl(ep->identity);
	key.direction = direction;
	key.proto = t->proto;
	key.port = t->dport;
	if (remote.identity)
		allowed |= rule_allows(&key, remote.identity, slot);
	if (remote.cidr_class)
		allowed |= rule_allows(&key, remote.cidr_class, slot);
	allowed |= rule_allows(&key, POL_REMOTE_ANY, slot);
	return allowed;
}

#endif
