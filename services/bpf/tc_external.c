/* Packet-level load balancing on the node's external interfaces (TC),
 * for traffic that never passed a local socket hook: a packet from
 * outside to a NodePort, externalIP or LoadBalancer IP is pointed at a
 * backend on the way in, and the backend's replies get the frontend's
 * address back on the way out. Connection tracking keeps every packet of
 * a flow on the backend its first packet chose, and that choice is
 * consistent (Maglev): any node picks the same backend for the same
 * flow. The client's address is
 * kept, so backends see who connected, when the backend is on this node;
 * to a backend on another node the packet leaves with this node's address
 * and a port of its own as source (SNAT), so that the reply comes back
 * here, where it gets the frontend and the client back and is sent out
 * to the client. A Service without endpoints
 * refuses as a closed port would: TCP with a reset, UDP with ICMP port
 * unreachable. The node's LoadBalancer IPs are announced on the link
 * (announce.h): ARP requests and Neighbor Solicitations for them are
 * answered on the way in. */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lb.h"
#include "maps.h"
#include "csum.h"
#include "announce.h"
#include "maglev.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* SNAT source ports: above the kernel's default ephemeral range
 * (32768-60999), so the node's own connections do not meet them. A flow
 * gets a random free one; after SNAT_TRIES taken ones, it is dropped. */
#define SNAT_PORT_MIN 61000
#define SNAT_PORTS (65536 - SNAT_PORT_MIN)
#define SNAT_TRIES 8

#define IP4_OFF ETH_HLEN
#define IP6_OFF ETH_HLEN
#define L4_4_OFF (ETH_HLEN + sizeof(struct iphdr))
#define L4_6_OFF (ETH_HLEN + sizeof(struct ipv6hdr))

/* Source and destination ports, first in both TCP and UDP headers. */
struct ports {
	__be16 source;
	__be16 dest;
};

static __always_inline int csum_off(__u8 proto, int l4)
{
	return l4 + (proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check));
}

/* A zero UDP checksum means "none" and must stay so. */
static __always_inline __u64 l4_flags(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites one address and port of an IPv4 packet (destination when
 * `dest`, else source), fixing the IP and L4 checksums. */
static __always_inline void rewrite4(struct __sk_buff *skb, __u8 proto, int dest, __be32 old_addr, __be32 addr,
				     __be16 old_port, __be16 port)
{
	int addr_off = IP4_OFF + (dest ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	int port_off = L4_4_OFF + (dest ? offsetof(struct ports, dest) : offsetof(struct ports, source));
	int l4 = csum_off(proto, L4_4_OFF);

	bpf_l4_csum_replace(skb, l4, old_addr, addr, l4_flags(proto) | BPF_F_PSEUDO_HDR | sizeof(addr));
	bpf_l4_csum_replace(skb, l4, old_port, port, l4_flags(proto) | sizeof(port));
	bpf_l3_csum_replace(skb, IP4_OFF + offsetof(struct iphdr, check), old_addr, addr, sizeof(addr));
	bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0);
	bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0);
}

/* The same for IPv6, which has no IP checksum. */
static __always_inline void rewrite6(struct __sk_buff *skb, __u8 proto, int dest, const __u8 *old_addr,
				     const __u8 *addr, __be16 old_port, __be16 port)
{
	int addr_off = IP6_OFF + (dest ? offsetof(struct ipv6hdr, daddr) : offsetof(struct ipv6hdr, saddr));
	int port_off = L4_6_OFF + (dest ? offsetof(struct ports, dest) : offsetof(struct ports, source));
	int l4 = csum_off(proto, L4_6_OFF);
	__s64 diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)addr, 16, 0);

	bpf_l4_csum_replace(skb, l4, 0, diff, l4_flags(proto) | BPF_F_PSEUDO_HDR);
	bpf_l4_csum_replace(skb, l4, old_port, port, l4_flags(proto) | sizeof(port));
	bpf_skb_store_bytes(skb, addr_off, addr, 16, 0);
	bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0);
}

/* Reads the IPv4 flow of the packet into `key`; 0 when it is not plain
 * (unfragmented, no options) TCP or UDP. */
static __always_inline int flow4(struct __sk_buff *skb, struct ct4_key *key)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP4_OFF;
	struct ports *p = data + L4_4_OFF;

	if ((void *)(p + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return 0;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->sport = p->source;
	key->dport = p->dest;
	key->proto = ip->protocol;
	return 1;
}

static __always_inline int flow6(struct __sk_buff *skb, struct ct6_key *key)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + IP6_OFF;
	struct ports *p = data + L4_6_OFF;

	if ((void *)(p + 1) > end)
		return 0;
	if (ip->nexthdr != IPPROTO_TCP && ip->nexthdr != IPPROTO_UDP)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->saddr, &ip->saddr, 16);
	__builtin_memcpy(key->daddr, &ip->daddr, 16);
	key->sport = p->source;
	key->dport = p->dest;
	key->proto = ip->nexthdr;
	return 1;
}

static __always_inline int ether_type(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return 0;
	return bpf_ntohs(eth->h_proto);
}

/* What track4/6 found for a new flow. */
#define NOT_A_FRONTEND 0
#define TRACKED 1
#define DROP -1
#define REFUSE -2

static __always_inline struct lb_node *snat_addresses(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&nl_lb_node, &zero);
}

/* The reverse translation of a new flow to the remote backend in `to`:
 * where its replies go back to, under a free SNAT port of this node's
 * address, which it writes into `to`. 1: done; 0: the node has no address
 * of the family (no SNAT then); -1: no free port. */
static __always_inline int snat4_reserve(struct __sk_buff *skb, const struct ct4_key *key, struct ct4_value *to)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct lb_node *node = snat_addresses();
	struct snat4_value back;
	struct ct4_key rev;

	if (!node || !node->v4)
		return 0;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memset(&back, 0, sizeof(back));
	back.client = key->saddr;
	back.client_port = key->sport;
	back.frontend = key->daddr;
	back.frontend_port = key->dport;
	back.ifindex = skb->ifindex;
	__builtin_memcpy(back.client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(back.node_mac, eth->h_dest, ETH_ALEN);
	__builtin_memset(&rev, 0, sizeof(rev));
	rev.saddr = to->address;
	rev.sport = to->port;
	rev.daddr = node->v4;
	rev.proto = key->proto;
	for (int i = 0; i < SNAT_TRIES; i++) {
		rev.dport = bpf_htons(SNAT_PORT_MIN + bpf_get_prandom_u32() % SNAT_PORTS);
		if (bpf_map_update_elem(&nl_snat4, &rev, &back, BPF_NOEXIST) == 0) {
			to->snat_port = rev.dport;
			return 1;
		}
	}
	return -1;
}

static __always_inline int snat6_reserve(struct __sk_buff *skb, const struct ct6_key *key, struct ct6_value *to)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct lb_node *node = snat_addresses();
	struct snat6_value back;
	struct ct6_key rev;
	__u64 *a;

	if (!node)
		return 0;
	a = (__u64 *)node->v6;
	if (!a[0] && !a[1])
		return 0;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memset(&back, 0, sizeof(back));
	__builtin_memcpy(back.client, key->saddr, 16);
	back.client_port = key->sport;
	__builtin_memcpy(back.frontend, key->daddr, 16);
	back.frontend_port = key->dport;
	back.ifindex = skb->ifindex;
	__builtin_memcpy(back.client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(back.node_mac, eth->h_dest, ETH_ALEN);
	__builtin_memset(&rev, 0, sizeof(rev));
	__builtin_memcpy(rev.saddr, to->address, 16);
	rev.sport = to->port;
	__builtin_memcpy(rev.daddr, node->v6, 16);
	rev.proto = key->proto;
	for (int i = 0; i < SNAT_TRIES; i++) {
		rev.dport = bpf_htons(SNAT_PORT_MIN + bpf_get_prandom_u32() % SNAT_PORTS);
		if (bpf_map_update_elem(&nl_snat6, &rev, &back, BPF_NOEXIST) == 0) {
			to->snat_port = rev.dport;
			return 1;
		}
	}
	return -1;
}

/* Whether the backend a tracked flow was sent to is still there: its id
 * still names the same address and port. */
static __always_inline int backend_live4(const struct ct4_value *to)
{
	struct lb4_backend *be = bpf_map_lookup_elem(&nl_lb4_be, &to->backend_id);

	return be && be->address == to->address && be->port == to->port;
}

static __always_inline int backend_live6(const struct ct6_value *to)
{
	struct lb6_backend *be = bpf_map_lookup_elem(&nl_lb6_be, &to->backend_id);
	const __u32 *a, *b;

	if (!be || be->port != to->port)
		return 0;
	a = (const __u32 *)be->address;
	b = (const __u32 *)to->address;
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* A new flow to a frontend: picks its backend (by the frontend's Maglev
 * table, maglev.h) and records both directions; or says to drop or
 * refuse it. */
static __always_inline int track4(struct __sk_buff *skb, const struct ct4_key *key, struct ct4_value *to)
{
	struct lb4_key svc_key;
	struct lb_slot *svc, *slot;
	struct lb4_backend *be;
	struct ct4_key rev;
	struct ct4_value front;
	__u32 backend_id;

	__builtin_memset(&svc_key, 0, sizeof(svc_key));
	svc_key.address = key->daddr;
	svc_key.port = key->dport;
	svc_key.proto = key->proto;
	svc_key.scope = LB_SCOPE_EXTERNAL;
	svc = bpf_map_lookup_elem(&nl_lb4_svc, &svc_key);
	if (!svc)
		return 0;
	if (svc->count == 0) {
		count_empty(&nl_lb4_empty, &svc_key);
		return svc->flags & LB_FLAG_EMPTY_DROPS ? DROP : REFUSE;
	}
	if (svc->flags & LB_FLAG_SOURCE_RANGES) {
		struct lb4_source_key src;

		__builtin_memset(&src, 0, sizeof(src));
		src.prefixlen = 64 + 32;
		src.frontend = key->daddr;
		src.port = key->dport;
		src.proto = key->proto;
		src.source = key->saddr;
		if (!bpf_map_lookup_elem(&nl_lb4_src, &src))
			return DROP;
	}
	backend_id = maglev_backend(svc, maglev_hash4(key));
	if (!backend_id) {
		svc_key.slot = bpf_get_prandom_u32() % svc->count + 1;
		slot = bpf_map_lookup_elem(&nl_lb4_svc, &svc_key);
		if (!slot)
			return DROP;
		backend_id = slot->backend_id;
	}
	be = bpf_map_lookup_elem(&nl_lb4_be, &backend_id);
	if (!be)
		return DROP;
	__builtin_memset(to, 0, sizeof(*to));
	to->address = be->address;
	to->port = be->port;
	to->backend_id = backend_id;
	if (be->flags & LB_BACKEND_REMOTE) {
		int snat = snat4_reserve(skb, key, to);

		if (snat < 0)
			return DROP;
		if (snat > 0) {
			bpf_map_update_elem(&nl_ct4_fwd, key, to, BPF_ANY);
			return TRACKED;
		}
	}
	bpf_map_update_elem(&nl_ct4_fwd, key, to, BPF_ANY);

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.saddr = be->address;
	rev.sport = be->port;
	rev.daddr = key->saddr;
	rev.dport = key->sport;
	rev.proto = key->proto;
	__builtin_memset(&front, 0, sizeof(front));
	front.address = key->daddr;
	front.port = key->dport;
	bpf_map_update_elem(&nl_ct4_rev, &rev, &front, BPF_ANY);
	return TRACKED;
}

static __always_inline int track6(struct __sk_buff *skb, const struct ct6_key *key, struct ct6_value *to)
{
	struct lb6_key svc_key;
	struct lb_slot *svc, *slot;
	struct lb6_backend *be;
	struct ct6_key rev;
	struct ct6_value front;
	__u32 backend_id;

	__builtin_memset(&svc_key, 0, sizeof(svc_key));
	__builtin_memcpy(svc_key.address, key->daddr, 16);
	svc_key.port = key->dport;
	svc_key.proto = key->proto;
	svc_key.scope = LB_SCOPE_EXTERNAL;
	svc = bpf_map_lookup_elem(&nl_lb6_svc, &svc_key);
	if (!svc)
		return 0;
	if (svc->count == 0) {
		count_empty(&nl_lb6_empty, &svc_key);
		return svc->flags & LB_FLAG_EMPTY_DROPS ? DROP : REFUSE;
	}
	if (svc->flags & LB_FLAG_SOURCE_RANGES) {
		struct lb6_source_key src;

		__builtin_memset(&src, 0, sizeof(src));
		src.prefixlen = 160 + 128;
		__builtin_memcpy(src.frontend, key->daddr, 16);
		src.port = key->dport;
		src.proto = key->proto;
		__builtin_memcpy(src.source, key->saddr, 16);
		if (!bpf_map_lookup_elem(&nl_lb6_src, &src))
			return DROP;
	}
	backend_id = maglev_backend(svc, maglev_hash6(key));
	if (!backend_id) {
		svc_key.slot = bpf_get_prandom_u32() % svc->count + 1;
		slot = bpf_map_lookup_elem(&nl_lb6_svc, &svc_key);
		if (!slot)
			return DROP;
		backend_id = slot->backend_id;
	}
	be = bpf_map_lookup_elem(&nl_lb6_be, &backend_id);
	if (!be)
		return DROP;
	__builtin_memset(to, 0, sizeof(*to));
	__builtin_memcpy(to->address, be->address, 16);
	to->port = be->port;
	to->backend_id = backend_id;
	if (be->flags & LB_BACKEND_REMOTE) {
		int snat = snat6_reserve(skb, key, to);

		if (snat < 0)
			return DROP;
		if (snat > 0) {
			bpf_map_update_elem(&nl_ct6_fwd, key, to, BPF_ANY);
			return TRACKED;
		}
	}
	bpf_map_update_elem(&nl_ct6_fwd, key, to, BPF_ANY);

	__builtin_memset(&rev, 0, sizeof(rev));
	__builtin_memcpy(rev.saddr, be->address, 16);
	rev.sport = be->port;
	__builtin_memcpy(rev.daddr, key->saddr, 16);
	rev.dport = key->sport;
	rev.proto = key->proto;
	__builtin_memset(&front, 0, sizeof(front));
	__builtin_memcpy(front.address, key->daddr, 16);
	front.port = key->dport;
	bpf_map_update_elem(&nl_ct6_rev, &rev, &front, BPF_ANY);
	return TRACKED;
}

/* Turns a SYN to a frontend without endpoints into the RST that refuses
 * it and sends that back out of the interface it came in on; anything
 * else to such a frontend is dropped. */
struct tcp_reply {
	__be32 seq;
	__be32 ack;
};

static __always_inline int tcp_refusal(struct tcphdr *tcp, struct tcp_reply *r)
{
	if (!tcp->syn || tcp->ack || tcp->rst)
		return 0;
	r->seq = 0;
	r->ack = bpf_htonl(bpf_ntohl(tcp->seq) + 1);
	return 1;
}

static __always_inline void make_rst(struct tcphdr *tcp, const struct tcp_reply *r)
{
	__be16 port = tcp->source;

	tcp->source = tcp->dest;
	tcp->dest = port;
	tcp->seq = r->seq;
	tcp->ack_seq = r->ack;
	/* doff 5, flags RST|ACK, no window. */
	((__u8 *)tcp)[12] = 5 << 4;
	((__u8 *)tcp)[13] = 0x14;
	tcp->window = 0;
	tcp->check = 0;
	tcp->urg_ptr = 0;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
}

static __always_inline int reset4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tcphdr *tcp = data + L4_4_OFF;
	struct tcp_reply reply;

	if ((void *)(tcp + 1) > end || !tcp_refusal(tcp, &reply))
		return TC_ACT_SHOT;
	/* Headers only: the RST carries no options and no payload. */
	if (bpf_skb_change_tail(skb, L4_4_OFF + sizeof(struct tcphdr), 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP4_OFF;
	tcp = data + L4_4_OFF;
	if ((void *)(tcp + 1) > end)
		return TC_ACT_SHOT;
	swap_macs(eth);
	__be32 addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
	ip->ttl = 64;
	ip->check = 0;
	ip->check = csum(ip, sizeof(struct iphdr), 0);
	make_rst(tcp, &reply);
	struct {
		__be32 saddr;
		__be32 daddr;
		__u8 zero;
		__u8 proto;
		__be16 len;
	} pseudo = { ip->saddr, ip->daddr, 0, IPPROTO_TCP, bpf_htons(sizeof(struct tcphdr)) };
	__u32 seed = (__u32)bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	tcp->check = csum(tcp, sizeof(struct tcphdr), seed);
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int reset6(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tcphdr *tcp = data + L4_6_OFF;
	struct tcp_reply reply;

	if ((void *)(tcp + 1) > end || !tcp_refusal(tcp, &reply))
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, L4_6_OFF + sizeof(struct tcphdr), 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip = data + IP6_OFF;
	tcp = data + L4_6_OFF;
	if ((void *)(tcp + 1) > end)
		return TC_ACT_SHOT;
	swap_macs(eth);
	struct in6_addr addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->payload_len = bpf_htons(sizeof(struct tcphdr));
	ip->hop_limit = 64;
	make_rst(tcp, &reply);
	__u32 seed = pseudo6_seed(&ip->saddr, &ip->daddr, sizeof(struct tcphdr), IPPROTO_TCP);
	tcp->check = csum(tcp, sizeof(struct tcphdr), seed);
	return bpf_redirect(skb->ifindex, 0);
}

/* Turns a UDP datagram to a frontend without endpoints into the ICMP
 * "port unreachable" that refuses it, quoting the datagram's IP header and
 * the first 8 bytes after it as RFC 792 asks, and sends that back out of
 * the interface it came in on. */
#define ICMP4_ROOM (sizeof(struct iphdr) + 8)
#define QUOTE4 (sizeof(struct iphdr) + 8)

static __always_inline int unreachable4(struct __sk_buff *skb)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip, *quoted;
	__u8 *icmp;

	/* Room for a new IP and ICMP header between Ethernet and the quote,
	 * and nothing after the quote. */
	if (bpf_skb_adjust_room(skb, ICMP4_ROOM, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, ETH_HLEN + ICMP4_ROOM + QUOTE4, 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	icmp = data + ETH_HLEN + sizeof(struct iphdr);
	quoted = data + ETH_HLEN + ICMP4_ROOM;
	if ((void *)quoted + QUOTE4 > end)
		return TC_ACT_SHOT;
	swap_macs(eth);
	eth->h_proto = bpf_htons(ETH_P_IP);
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(ICMP4_ROOM + QUOTE4);
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = quoted->daddr;
	ip->daddr = quoted->saddr;
	ip->check = csum(ip, sizeof(*ip), 0);
	__builtin_memset(icmp, 0, 8);
	icmp[0] = 3; /* destination unreachable */
	icmp[1] = 3; /* port unreachable */
	__u32 seed = (__u32)bpf_csum_diff(0, 0, (__be32 *)quoted, QUOTE4, 0);
	__u16 sum = csum(icmp, 8, seed);
	__builtin_memcpy(icmp + 2, &sum, sizeof(sum));
	return bpf_redirect(skb->ifindex, 0);
}

#define ICMP6_ROOM (sizeof(struct ipv6hdr) + 8)
#define QUOTE6 (sizeof(struct ipv6hdr) + 8)

static __always_inline int unreachable6(struct __sk_buff *skb)
{
	void *data, *end;
	struct ethhdr *eth;
	struct ipv6hdr *ip, *quoted;
	__u8 *icmp;

	if (bpf_skb_adjust_room(skb, ICMP6_ROOM, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, ETH_HLEN + ICMP6_ROOM + QUOTE6, 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	icmp = data + ETH_HLEN + sizeof(struct ipv6hdr);
	quoted = data + ETH_HLEN + ICMP6_ROOM;
	if ((void *)quoted + QUOTE6 > end)
		return TC_ACT_SHOT;
	swap_macs(eth);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 6;
	ip->payload_len = bpf_htons(8 + QUOTE6);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = 64;
	ip->saddr = quoted->daddr;
	ip->daddr = quoted->saddr;
	__builtin_memset(icmp, 0, 8);
	icmp[0] = 1; /* destination unreachable */
	icmp[1] = 4; /* port unreachable */
	__u32 seed = pseudo6_seed(&ip->saddr, &ip->daddr, 8 + QUOTE6, IPPROTO_ICMPV6);
	seed = (__u32)bpf_csum_diff(0, 0, (__be32 *)quoted, QUOTE6, seed);
	__u16 sum = csum(icmp, 8, seed);
	__builtin_memcpy(icmp + 2, &sum, sizeof(sum));
	return bpf_redirect(skb->ifindex, 0);
}

/* Sends a packet this program rewrote to `dst` on its way, past the IP
 * stack (which would take a packet from outside with this node's address
 * as source for a martian): out of the interface the routes say, to the
 * next hop's MAC. */
static __always_inline int forward(struct __sk_buff *skb, int family, const void *src, const void *dst)
{
	struct bpf_fib_lookup fib;
	int rc;

	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = family;
	fib.ifindex = skb->ifindex;
	if (family == AF_INET) {
		fib.ipv4_src = *(const __be32 *)src;
		fib.ipv4_dst = *(const __be32 *)dst;
	} else {
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0);
		bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	return TC_ACT_SHOT;
}

/* A packet of a flow to a remote backend, its destination already
 * translated: gets this node's address and the flow's port as source. */
static __always_inline int snat4(struct __sk_buff *skb, const struct ct4_key *key, const struct ct4_value *to)
{
	struct lb_node *node = snat_addresses();
	__be32 src, dst = to->address;

	if (!node || !node->v4)
		return TC_ACT_SHOT;
	src = node->v4;
	rewrite4(skb, key->proto, 0, key->saddr, src, key->sport, to->snat_port);
	return forward(skb, AF_INET, &src, &dst);
}

static __always_inline int snat6(struct __sk_buff *skb, const struct ct6_key *key, const struct ct6_value *to)
{
	struct lb_node *node = snat_addresses();
	__u8 src[16], dst[16];

	if (!node)
		return TC_ACT_SHOT;
	__builtin_memcpy(src, node->v6, 16);
	__builtin_memcpy(dst, to->address, 16);
	rewrite6(skb, key->proto, 0, key->saddr, src, key->sport, to->snat_port);
	return forward(skb, AF_INET6, src, dst);
}

/* A remote backend's reply to a SNATed flow: from the frontend to the
 * client again, sent back out where the client's packets came in. */
static __always_inline int unsnat4(struct __sk_buff *skb, const struct ct4_key *key, const struct snat4_value *found)
{
	struct snat4_value back = *found;

	rewrite4(skb, key->proto, 1, key->daddr, back.client, key->dport, back.client_port);
	rewrite4(skb, key->proto, 0, key->saddr, back.frontend, key->sport, back.frontend_port);
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), back.client_mac, ETH_ALEN, 0);
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), back.node_mac, ETH_ALEN, 0);
	return bpf_redirect(back.ifindex, 0);
}

static __always_inline int unsnat6(struct __sk_buff *skb, const struct ct6_key *key, const struct snat6_value *found)
{
	struct snat6_value back = *found;

	rewrite6(skb, key->proto, 1, key->daddr, back.client, key->dport, back.client_port);
	rewrite6(skb, key->proto, 0, key->saddr, back.frontend, key->sport, back.frontend_port);
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), back.client_mac, ETH_ALEN, 0);
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), back.node_mac, ETH_ALEN, 0);
	return bpf_redirect(back.ifindex, 0);
}

/* In from outside: to a frontend, it goes to the flow's backend instead. */
SEC("classifier")
int netlet_external_in(struct __sk_buff *skb)
{
	int type = ether_type(skb);

	if (type == ETH_P_ARP)
		return answer_arp(skb);
	if (type == ETH_P_IP) {
		struct ct4_key key;
		struct ct4_value to, *known;

		if (!flow4(skb, &key))
			return TC_ACT_OK;
		known = bpf_map_lookup_elem(&nl_ct4_fwd, &key);
		/* A flow whose backend left starts over as a new one. */
		if (known && !backend_live4(known))
			known = NULL;
		if (known) {
			to = *known;
		} else {
			struct snat4_value *back = bpf_map_lookup_elem(&nl_snat4, &key);
			if (back)
				return unsnat4(skb, &key, back);
			int tracked = track4(skb, &key, &to);
			if (tracked == NOT_A_FRONTEND)
				return TC_ACT_OK;
			if (tracked == REFUSE)
				return key.proto == IPPROTO_TCP ? reset4(skb) : unreachable4(skb);
			if (tracked != TRACKED)
				return TC_ACT_SHOT;
		}
		rewrite4(skb, key.proto, 1, key.daddr, to.address, key.dport, to.port);
		if (to.snat_port)
			return snat4(skb, &key, &to);
	} else if (type == ETH_P_IPV6) {
		struct ct6_key key;
		struct ct6_value to, *known;

		/* Not TCP or UDP: maybe a Neighbor Solicitation to answer. */
		if (!flow6(skb, &key))
			return answer_solicitation(skb);
		known = bpf_map_lookup_elem(&nl_ct6_fwd, &key);
		if (known && !backend_live6(known))
			known = NULL;
		if (known) {
			to = *known;
		} else {
			struct snat6_value *back = bpf_map_lookup_elem(&nl_snat6, &key);
			if (back)
				return unsnat6(skb, &key, back);
			int tracked = track6(skb, &key, &to);
			if (tracked == NOT_A_FRONTEND)
				return TC_ACT_OK;
			if (tracked == REFUSE)
				return key.proto == IPPROTO_TCP ? reset6(skb) : unreachable6(skb);
			if (tracked != TRACKED)
				return TC_ACT_SHOT;
		}
		rewrite6(skb, key.proto, 1, key.daddr, to.address, key.dport, to.port);
		if (to.snat_port)
			return snat6(skb, &key, &to);
	}
	return TC_ACT_OK;
}

/* Out to outside: a backend's reply seems to come from the frontend. */
SEC("classifier")
int netlet_external_out(struct __sk_buff *skb)
{
	int type = ether_type(skb);

	if (type == ETH_P_IP) {
		struct ct4_key key;
		struct ct4_value *front;

		if (!flow4(skb, &key))
			return TC_ACT_OK;
		front = bpf_map_lookup_elem(&nl_ct4_rev, &key);
		if (front)
			rewrite4(skb, key.proto, 0, key.saddr, front->address, key.sport, front->port);
	} else if (type == ETH_P_IPV6) {
		struct ct6_key key;
		struct ct6_value *front;

		if (!flow6(skb, &key))
			return TC_ACT_OK;
		front = bpf_map_lookup_elem(&nl_ct6_rev, &key);
		if (front) {
			struct ct6_value f = *front;
			rewrite6(skb, key.proto, 0, key.saddr, f.address, key.sport, f.port);
		}
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
