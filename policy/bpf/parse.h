/* Reading a packet into the tuple policy judges: addresses as 16 bytes
 * (IPv4 v4-mapped), protocol and ports. IPv4 and IPv6 differ only in
 * reading the IP header; everything after it is shared. Reads go through
 * bpf_skb_load_bytes, which copes with any header layout and paged data. */
#ifndef NETLET_POLICY_PARSE_H
#define NETLET_POLICY_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"

/* What a packet is to policy. */
#define PKT_NOT_IP 0
/* A packet of a flow: judged, and tracked once allowed. */
#define PKT_FLOW 1
/* An ICMP error: related to the flow of the packet it quotes. */
#define PKT_ICMP_ERROR 2
/* ICMPv6 neighbour discovery, without which nothing else works. */
#define PKT_ALWAYS 3
/* IPv6 with an IPv4-mapped address, which must not appear on the wire
 * (Linux drops such sources itself): the maps could not tell it from
 * IPv4, so it is never let through. */
#define PKT_V4_MAPPED 4

struct packet {
	/* The packet's own tuple; origin is left 0. */
	struct pol_ct_key flow;
	/* PKT_ICMP_ERROR: the tuple of the quoted packet. */
	struct pol_ct_key inner;
	__u8 kind;
	/* 4 or 6; 0 when not IP. */
	__u8 family;
};

/* IPv6 extension headers skipped to reach the transport header. */
#define MAX_EXTENSION_HEADERS 6

/* The first four bytes of every IPv6 extension header this skips; only
 * the fragment header has `fragment` (offset and flags) there. */
struct ext_head {
	__u8 next;
	__u8 len;
	__be16 fragment;
};

static __always_inline void v4_mapped(__u8 *to, __be32 addr)
{
	__builtin_memset(to, 0, 10);
	to[10] = 0xff;
	to[11] = 0xff;
	__builtin_memcpy(to + 12, &addr, 4);
}

static __always_inline int is_v4_mapped(const __u8 *a)
{
	__u64 head;
	__u32 mid;

	__builtin_memcpy(&head, a, 8);
	__builtin_memcpy(&mid, a + 8, 4);
	return head == 0 && mid == bpf_htonl(0xffff);
}

static __always_inline int is_extension_header(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_FRAGMENT || next == IPPROTO_AH;
}

/* Reads the IPv4 or IPv6 header at `off` into t's addresses and protocol.
 * Returns the offset of the transport header, or -1 when the header is
 * truncated. `later` is set for a fragment other than the first, which
 * carries no transport header. */
static __always_inline int parse_ip(struct __sk_buff *skb, int off, __u8 family, struct pol_ct_key *t, int *later)
{
	*later = 0;
	if (family == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return -1;
		v4_mapped(t->saddr, ip.saddr);
		v4_mapped(t->daddr, ip.daddr);
		t->proto = ip.protocol;
		*later = (ip.frag_off & bpf_htons(0x1fff)) != 0;
		return off + ip.ihl * 4;
	}
	struct ipv6hdr ip6;
	__u8 next;

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return -1;
	__builtin_memcpy(t->saddr, &ip6.saddr, 16);
	__builtin_memcpy(t->daddr, &ip6.daddr, 16);
	next = ip6.nexthdr;
	off += sizeof(ip6);
#pragma unroll
	for (int i = 0; i < MAX_EXTENSION_HEADERS; i++) {
		struct ext_head ext;

		if (!is_extension_header(next))
			break;
		if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
			return -1;
		if (next == IPPROTO_FRAGMENT) {
			*later = (ext.fragment & bpf_htons(0xfff8)) != 0;
			off += 8;
		} else if (next == IPPROTO_AH) {
			off += (ext.len + 2) * 4;
		} else {
			off += (ext.len + 1) * 8;
		}
		next = ext.next;
	}
	t->proto = next;
	return off;
}

static __always_inline int icmp_proto(__u8 family)
{
	return family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
}

static __always_inline int is_echo(__u8 family, __u8 type)
{
	return family == 4 ? (type == 8 || type == 0) : (type == 128 || type == 129);
}

/* Destination unreachable, time exceeded, parameter problem (and for
 * IPv4 the old source quench and redirect; for IPv6 packet too big):
 * the errors that quote the packet they are about. */
static __always_inline int is_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

struct icmp_head {
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 echo_id;
	__be16 echo_seq;
};

/* Reads the ports of the transport header at `off` into `t` (the echo id
 * as both ports for ICMP echo; 0 when there are none, or they cannot be
 * read) and says what kind of packet this is. */
static __always_inline int parse_transport(struct __sk_buff *skb, int off, __u8 family, struct pol_ct_key *t,
					   int later)
{
	t->sport = 0;
	t->dport = 0;
	if (later)
		return PKT_FLOW;
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP ||
	    t->proto == IPPROTO_UDPLITE) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
			t->sport = ports[0];
			t->dport = ports[1];
		}
		return PKT_FLOW;
	}
	if (t->proto != icmp_proto(family))
		return PKT_FLOW;
	struct icmp_head icmp;

	if (bpf_skb_load_bytes(skb, off, &icmp, sizeof(icmp)) < 0)
		return PKT_FLOW;
	if (is_echo(family, icmp.type)) {
		t->sport = icmp.echo_id;
		t->dport = icmp.echo_id;
		return PKT_FLOW;
	}
	if (is_error(family, icmp.type))
		return PKT_ICMP_ERROR;
	if (family == 6 && icmp.type >= 133 && icmp.type <= 137)
		return PKT_ALWAYS;
	return PKT_FLOW;
}

/* Reads the packet (an Ethernet frame) into `p`. An ICMP error whose
 * quote cannot be read is judged as plain ICMP. */
static __always_inline void parse_packet(struct __sk_buff *skb, struct packet *p)
{
	int off, later;

	__builtin_memset(p, 0, sizeof(*p));
	if (skb->protocol == bpf_htons(ETH_P_IP))
		p->family = 4;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		p->family = 6;
	else
		return;
	p->kind = PKT_FLOW;
	off = parse_ip(skb, ETH_HLEN, p->family, &p->flow, &later);
	if (off < 0)
		return;
	if (p->family == 6 && (is_v4_mapped(p->flow.saddr) || is_v4_mapped(p->flow.daddr))) {
		p->kind = PKT_V4_MAPPED;
		return;
	}
	p->kind = parse_transport(skb, off, p->family, &p->flow, later);
	if (p->kind != PKT_ICMP_ERROR)
		return;
	/* The quote follows the 8-byte ICMP header. */
	off = parse_ip(skb, off + sizeof(struct icmp_head), p->family, &p->inner, &later);
	if (off < 0 || parse_transport(skb, off, p->family, &p->inner, later) != PKT_FLOW)
		p->kind = PKT_FLOW;
}

#endif
