/* Announcing the node's LoadBalancer IPs on its link, as a cloud load
 * balancer would make them reachable: an ARP request (IPv4) or Neighbor
 * Solicitation (IPv6) for an address in nl_lb4_ann / nl_lb6_ann, arriving
 * on an external interface, is turned into the answer in place, with the
 * interface's MAC (nl_lb_dev), and sent back out of that interface. The
 * addresses are not the node's own, so the kernel would not answer; and
 * nothing else on the link holds them. Anything else passes untouched. */
#ifndef NETLET_ANNOUNCE_H
#define NETLET_ANNOUNCE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "csum.h"
#include "lb.h"
#include "maps.h"

/* An ARP packet for IPv4 over Ethernet (RFC 826), after the Ethernet
 * header. */
struct arp4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
};

#define ARP_ETHERNET 1
#define ARP_REQUEST 1
#define ARP_REPLY 2

/* A Neighbor Solicitation or Advertisement (RFC 4861 4.3, 4.4). */
struct nd_message {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 flags;
	struct in6_addr target;
};

/* The Target Link-Layer Address option of an advertisement (4.6.1). */
struct nd_lladdr_option {
	__u8 type;
	__u8 length; /* in units of 8 bytes */
	__u8 mac[ETH_ALEN];
};

#define ND_SOLICITATION 135
#define ND_ADVERTISEMENT 136
#define ND_OPTION_TARGET_LLADDR 2
/* Advertisement flags, in its first 32 bits after the checksum. */
#define ND_SOLICITED 0x40000000
#define ND_OVERRIDE 0x20000000

#define ND_OFF (ETH_HLEN + sizeof(struct ipv6hdr))
#define ND_ADVERTISEMENT_LEN (sizeof(struct nd_message) + sizeof(struct nd_lladdr_option))

/* The interface the packet came in on, if the agent announces there. */
static __always_inline struct lb_device *arrival_device(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;

	return bpf_map_lookup_elem(&nl_lb_dev, &ifindex);
}

/* An ARP request for an announced address becomes the reply: the asker
 * the target, the interface (with the address asked about) the sender. */
static __always_inline int answer_arp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct arp4 *arp = data + ETH_HLEN;
	struct lb4_announce_key key;
	struct lb_device *dev;
	__be32 asker;
	__u64 *answers;

	if ((void *)(arp + 1) > end)
		return TC_ACT_OK;
	if (arp->hrd != bpf_htons(ARP_ETHERNET) || arp->pro != bpf_htons(ETH_P_IP) || arp->hln != ETH_ALEN ||
	    arp->pln != 4 || arp->op != bpf_htons(ARP_REQUEST))
		return TC_ACT_OK;
	__builtin_memcpy(&key.address, arp->tpa, 4);
	__builtin_memcpy(&asker, arp->spa, 4);
	/* Sender and target the same: a host announcing the address (a
	 * gratuitous ARP), not asking for it. */
	if (asker == key.address)
		return TC_ACT_OK;
	answers = bpf_map_lookup_elem(&nl_lb4_ann, &key);
	dev = arrival_device(skb);
	if (!answers || !dev)
		return TC_ACT_OK;
	arp->op = bpf_htons(ARP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, &asker, 4);
	__builtin_memcpy(arp->sha, dev->mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, &key.address, 4);
	__builtin_memcpy(eth->h_dest, arp->tha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dev->mac, ETH_ALEN);
	__sync_fetch_and_add(answers, 1);
	return bpf_redirect(skb->ifindex, 0);
}

/* A Neighbor Solicitation for an announced address becomes the
 * advertisement (Override, and Solicited unless it came from Duplicate
 * Address Detection), with the interface's MAC as the target's link-layer
 * address, sent from the address asked about. */
static __always_inline int answer_solicitation(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip = data + ETH_HLEN;
	struct nd_message *nd = data + ND_OFF;
	struct nd_lladdr_option *option;
	struct lb6_announce_key key;
	struct lb_device *dev;
	struct in6_addr asker;
	__u8 asker_mac[ETH_ALEN];
	__u64 *answers;

	if ((void *)(nd + 1) > end)
		return TC_ACT_OK;
	/* RFC 4861 7.1.1: only a solicitation from the link itself (hop
	 * limit 255, as no router forwarded it) is valid. */
	if (ip->nexthdr != IPPROTO_ICMPV6 || ip->hop_limit != 255 || nd->type != ND_SOLICITATION || nd->code != 0)
		return TC_ACT_OK;
	__builtin_memcpy(key.address, &nd->target, 16);
	answers = bpf_map_lookup_elem(&nl_lb6_ann, &key);
	dev = arrival_device(skb);
	if (!answers || !dev)
		return TC_ACT_OK;
	asker = ip->saddr;
	__builtin_memcpy(asker_mac, eth->h_source, ETH_ALEN);
	/* Duplicate Address Detection asks from the unspecified address; the
	 * answer then goes to all nodes, not solicited (RFC 4861 7.2.4). */
	int detection = !(asker.in6_u.u6_addr32[0] | asker.in6_u.u6_addr32[1] | asker.in6_u.u6_addr32[2] |
			  asker.in6_u.u6_addr32[3]);

	/* Exactly the advertisement: the solicitation's options go. */
	if (bpf_skb_change_tail(skb, ND_OFF + ND_ADVERTISEMENT_LEN, 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	nd = data + ND_OFF;
	option = (void *)(nd + 1);
	if ((void *)(option + 1) > end)
		return TC_ACT_SHOT;
	if (detection) {
		/* ff02::1 and its MAC, 33:33:00:00:00:01. */
		__builtin_memset(eth->h_dest, 0, ETH_ALEN);
		eth->h_dest[0] = 0x33;
		eth->h_dest[1] = 0x33;
		eth->h_dest[5] = 1;
		__builtin_memset(&ip->daddr, 0, sizeof(ip->daddr));
		ip->daddr.in6_u.u6_addr8[0] = 0xff;
		ip->daddr.in6_u.u6_addr8[1] = 0x02;
		ip->daddr.in6_u.u6_addr8[15] = 1;
	} else {
		__builtin_memcpy(eth->h_dest, asker_mac, ETH_ALEN);
		ip->daddr = asker;
	}
	__builtin_memcpy(eth->h_source, dev->mac, ETH_ALEN);
	/* Version 6, no traffic class, no flow label. */
	__builtin_memset(ip, 0, 4);
	ip->version = 6;
	ip->payload_len = bpf_htons(ND_ADVERTISEMENT_LEN);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = 255;
	ip->saddr = nd->target;
	nd->type = ND_ADVERTISEMENT;
	nd->code = 0;
	nd->checksum = 0;
	nd->flags = bpf_htonl(detection ? ND_OVERRIDE : ND_SOLICITED | ND_OVERRIDE);
	option->type = ND_OPTION_TARGET_LLADDR;
	option->length = 1;
	__builtin_memcpy(option->mac, dev->mac, ETH_ALEN);
	nd->checksum =
		csum(nd, ND_ADVERTISEMENT_LEN, pseudo6_seed(&ip->saddr, &ip->daddr, ND_ADVERTISEMENT_LEN, IPPROTO_ICMPV6));
	__sync_fetch_and_add(answers, 1);
	return bpf_redirect(skb->ifindex, 0);
}

#endif
