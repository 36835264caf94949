/* NetworkPolicy enforcement: the map layouts the agent writes and the BPF
 * programs read. Every struct has explicit padding and is mirrored field
 * for field by a #[repr(C)] type in policy/src/maps.rs; a test compares
 * sizes and offsets (bpf/layout.c prints them for this header).
 *
 * Addresses are 16 bytes in every map, IPv4 as v4-mapped IPv6
 * (::ffff:a.b.c.d), so one code path serves both families. Fields marked
 * __be* are in network byte order. The map definitions themselves are in
 * map_defs.h. */
#ifndef NETLET_POLICY_MAPS_H
#define NETLET_POLICY_MAPS_H

#include <linux/types.h>

/* Fixed map sizes: host-side veths per node, and policy slots (counters
 * per NetworkPolicy). */
#define POL_ENDPOINT_ENTRIES 4096
#define POL_POLICY_SLOTS 16384

/* pol_endpoint.flags: which directions of the pod policies isolate. */
#define POL_ISOLATED_INGRESS 1
#define POL_ISOLATED_EGRESS 2

/* Per host-side veth (keyed by its ifindex): whose traffic this is. A
 * veth without an entry drops everything (the programs are attached
 * before the entry is written); flags 0 enforces nothing. */
struct pol_endpoint {
	__u32 identity;
	__u8 flags;
	__u8 pad[3];
};

/* The ipcache: pod IPs as /128 entries carrying the pod's identity, and
 * every ipBlock boundary prefix carrying its CIDR class (identity 0). A
 * lookup of any address returns its identity (0: not a pod) and the class
 * of the longest boundary containing it, which is all ipBlocks need. */
struct pol_ipcache_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct pol_ipcache_value {
	__u32 identity;
	__u32 cidr_class;
};

/* Class numbers have this bit set, pod identities never do, so both can
 * stand as the remote of a rule. */
#define POL_CLASS_BIT 0x80000000u
/* The remote of a rule that allows every peer (a rule without from/to). */
#define POL_REMOTE_ANY 0xffffffffu

/* Directions as rules and events name them. */
#define POL_DIR_INGRESS 0
#define POL_DIR_EGRESS 1

/* An allow rule, as an LPM trie key: the local identity, the remote
 * (pod identity, CIDR class or POL_REMOTE_ANY) and the direction always
 * match exactly (POL_RULE_ANY_PORT_BITS); a rule for a protocol adds its
 * 8 bits (POL_RULE_PROTO_BITS) and a port range is one entry per port
 * prefix on top. A lookup is one full-length key. */
struct pol_rule_key {
	__u32 prefixlen;
	__be32 local;
	__be32 remote;
	__u8 direction;
	__u8 proto;
	__be16 port;
};

#define POL_RULE_ANY_PORT_BITS 72
#define POL_RULE_PROTO_BITS 80
#define POL_RULE_FULL_BITS 96

/* Which NetworkPolicy the rule comes from (the lowest slot when several
 * allow the same key), for per-policy counters. */
struct pol_rule_value {
	__u32 policy_slot;
};

/* No policy: traffic of a pod not isolated, or from its own node. */
#define POL_SLOT_NONE 0xffffffffu

/* Which hook saw the first packet of a flow. */
#define POL_FROM_POD 1
#define POL_TO_POD 2

/* Connection tracking: one entry per flow and hook that allowed it, the
 * tuple as that first packet had it. ICMP echo uses the echo id as both
 * ports. */
struct pol_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 origin;
	__u8 pad[2];
};

/* pol_ct_value.flags: allowed because it came from the pod's own node
 * (kubelet probes), which no policy revision changes. */
#define POL_CT_FROM_NODE 1

/* An entry judged under an older revision (nl_pol_config) is judged again
 * on its next packet. */
struct pol_ct_value {
	__u64 created_ns;
	__u32 revision;
	__u32 policy_slot;
	__u8 flags;
	__u8 pad[7];
};

struct pol_config {
	__u32 revision;
	__u32 pad;
};

/* Per host-side veth, per direction (POL_DIR_*): new flows allowed and
 * packets dropped. */
struct pol_endpoint_counters {
	__u64 allowed[2];
	__u64 denied[2];
};

/* Why a packet was dropped. */
#define POL_DROP_NO_ENDPOINT 1
#define POL_DROP_DENIED 2
#define POL_DROP_REVOKED 3
/* IPv6 with an IPv4-mapped address (see parse.h). */
#define POL_DROP_V4_MAPPED 4

/* One dropped packet, through the nl_pol_drops ring buffer. family is 4
 * or 6, or 0 for a packet that is not IP. */
struct pol_drop_event {
	__u64 timestamp_ns;
	__u32 ifindex;
	__u32 local_identity;
	__u32 remote_identity;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 direction;
	__u8 reason;
	__u8 pad[4];
};

/* Drop events are sampled: at most this many per CPU and second. */
#define POL_DROP_EVENTS_PER_SEC 1000

struct pol_event_budget {
	__u64 window_ns;
	__u64 sent;
};

_Static_assert(sizeof(struct pol_endpoint) == 8, "pol_endpoint");
_Static_assert(sizeof(struct pol_ipcache_key) == 20, "pol_ipcache_key");
_Static_assert(sizeof(struct pol_ipcache_value) == 8, "pol_ipcache_value");
_Static_assert(sizeof(struct pol_rule_key) == 4 + POL_RULE_FULL_BITS / 8, "pol_rule_key");
_Static_assert(sizeof(struct pol_ct_key) == 40, "pol_ct_key");
_Static_assert(sizeof(struct pol_ct_value) == 24, "pol_ct_value");
_Static_assert(sizeof(struct pol_drop_event) == 64, "pol_drop_event");

#endif
