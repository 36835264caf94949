/* NetworkPolicy enforcement at a pod's host-side veth (TCX): `from_pod`
 * on its ingress sees what the pod sends (the pod's Egress policy),
 * `to_pod` on its egress what it receives (its Ingress policy).
 *
 * Stateful: the first packet of a flow is judged, an allowed flow is
 * tracked (even for a pod no policy isolates, so that replies to flows
 * from before an isolation still pass), and the rest of the flow, replies
 * included, passes as tracked. A flow tracked under an older policy
 * revision is judged again on its next packet and cut when no longer
 * allowed. A veth with no endpoint entry drops everything: the programs
 * are attached before the agent knows the pod. Allowed packets go on to
 * whatever else is attached (TC_ACT_UNSPEC); denied ones are dropped. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "ct.h"
#include "judge.h"
#include "parse.h"
#include "report.h"

#define PASS TC_ACT_UNSPEC

#define AF_INET 2
#define AF_INET6 10

/* Whether the packet comes from a socket of the node itself (kubelet
 * probes, which NetworkPolicy always lets in). Forwarded packets lost
 * their socket on the way in. BPF_PROG_TEST_RUN gives every packet a
 * dummy socket of the packet's family but without a type, which real
 * sockets always have. */
static __always_inline int from_node_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	return (sk->family == AF_INET || sk->family == AF_INET6) && sk->type != 0;
}

/* A packet of a flow, at `hook` of the veth of `ep`. */
static __always_inline int enforce_flow(struct __sk_buff *skb, const struct packet *p,
					const struct pol_endpoint *ep, __u8 hook)
{
	__u8 direction = direction_of(hook);
	__u32 revision = policy_revision();
	struct pol_ct_value *tracked;
	struct pol_ct_key key;
	__u8 flags = 0;
	__u32 slot;

	tracked = ct_find(&p->flow, hook, &key);
	if (tracked) {
		if (tracked->revision == revision)
			return PASS;
		/* Judged again as its first packet was: from the entry's
		 * own hook, by this (the same) veth's pod. */
		if (tracked->flags & POL_CT_FROM_NODE) {
			tracked->revision = revision;
			return PASS;
		}
		if (judge(ep, &key, key.origin, &slot)) {
			tracked->revision = revision;
			tracked->policy_slot = slot;
			return PASS;
		}
		bpf_map_delete_elem(&nl_pol_ct, &key);
		return drop(skb, p, direction, POL_DROP_REVOKED, ep->identity);
	}
	if (hook == POL_TO_POD && from_node_socket(skb)) {
		flags = POL_CT_FROM_NODE;
		slot = POL_SLOT_NONE;
	} else if (!judge(ep, &p->flow, hook, &slot)) {
		return drop(skb, p, direction, POL_DROP_DENIED, ep->identity);
	}
	ct_record(&p->flow, hook, revision, slot, flags);
	count_endpoint(skb->ifindex, direction, 1);
	if (slot != POL_SLOT_NONE)
		count_policy(slot);
	return PASS;
}

static __always_inline int enforce(struct __sk_buff *skb, __u8 hook)
{
	__u32 ifindex = skb->ifindex;
	struct pol_endpoint *ep;
	struct pol_ct_key key;
	struct packet p;

	parse_packet(skb, &p);
	ep = bpf_map_lookup_elem(&nl_pol_endpts, &ifindex);
	if (!ep)
		return drop(skb, &p, direction_of(hook), POL_DROP_NO_ENDPOINT, 0);
	if (p.kind == PKT_NOT_IP || p.kind == PKT_ALWAYS)
		return PASS;
	if (p.kind == PKT_V4_MAPPED)
		return drop(skb, &p, direction_of(hook), POL_DROP_V4_MAPPED, ep->identity);
	/* An error about a packet of a tracked flow is part of it. The
	 * quoted packet went the other way, through the other hook. */
	if (p.kind == PKT_ICMP_ERROR && ct_find(&p.inner, other_hook(hook), &key))
		return PASS;
	return enforce_flow(skb, &p, ep, hook);
}

SEC("classifier")
int from_pod(struct __sk_buff *skb)
{
	return enforce(skb, POL_FROM_POD);
}

SEC("classifier")
int to_pod(struct __sk_buff *skb)
{
	return enforce(skb, POL_TO_POD);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
