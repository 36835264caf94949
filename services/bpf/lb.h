/* Service load balancing: the map layouts the agent writes and the BPF
 * programs read. Every struct has explicit padding and is mirrored field
 * for field by a #[repr(C)] type in services/src/maps.rs; a test compares
 * sizes and offsets (bpf/layout.c prints them for this header).
 *
 * A Service frontend (address, port, protocol, scope) has slot 0, which holds the
 * number of usable backends; slots 1..count hold one backend id each.
 * Backends live in their own map, shared by every frontend that uses them.
 * Addresses and ports are in network byte order. */
#ifndef NETLET_LB_H
#define NETLET_LB_H

#include <linux/types.h>

/* Who a frontend entry serves: sockets on the node (pods and the node's
 * own processes), or packets from outside (TC), which
 * externalTrafficPolicy: Local limits to this node's endpoints. */
#define LB_SCOPE_INTERNAL 0
#define LB_SCOPE_EXTERNAL 1

struct lb4_key {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 scope;
	__u16 slot;
	__u8 pad1[2];
};

struct lb6_key {
	__u8 address[16];
	__be16 port;
	__u8 proto;
	__u8 scope;
	__u16 slot;
	__u8 pad1[2];
};

/* Slot 0: count of usable backends (0: refuse connections), the
 * Service's ClientIP affinity timeout in seconds (0: none) and, in
 * backend_id, the frontend's Maglev table in nl_lb_maglev (0: none, pick
 * at random). Slot n: the id of backend n. */
struct lb_slot {
	__u32 backend_id;
	__u16 count;
	__u8 flags;
	__u8 pad;
	__u32 affinity_timeout;
};

/* lb_slot.flags of slot 0: only sources in the frontend's ranges
 * (loadBalancerSourceRanges, in nl_lb4_src / nl_lb6_src) may use it. */
#define LB_FLAG_SOURCE_RANGES 1
/* lb_slot.flags of slot 0: with no backends, drop instead of refusing
 * (externalTrafficPolicy: Local, no endpoint on this node). */
#define LB_FLAG_EMPTY_DROPS 2

/* A source range of a frontend, as an LPM trie key: the frontend is
 * matched exactly (its 64 or 160 bits come first) and the source by
 * prefix, so prefixlen is those bits plus the range's length. */
struct lb4_source_key {
	__u32 prefixlen;
	__be32 frontend;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__be32 source;
};

struct lb6_source_key {
	__u32 prefixlen;
	__u8 frontend[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u8 source[16];
};

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 flags;
	__u8 pad;
};

struct lb6_backend {
	__u8 address[16];
	__be16 port;
	__u8 flags;
	__u8 pad;
};

/* lb4_backend.flags / lb6_backend.flags: the endpoint is on another node
 * (its EndpointSlice nodeName says so). Traffic from outside sent there
 * gets this node's address as its source (SNAT), so that the reply comes
 * back through this node for the reverse translation. */
#define LB_BACKEND_REMOTE 1

/* Maglev (consistent hashing) for traffic from outside: a flow's hash
 * indexes a table of backend ids that every node computes alike from the
 * same endpoints, so a node that never saw a flow (another node behind
 * ECMP, or after its conntrack entry was evicted) sends it to the same
 * backend, and an endpoint change moves only the flows it must. A prime
 * size; 1021 keeps each table at 4 KiB and backends within one entry of
 * each other in share (within ~10% at 100 backends). Tables are shared by
 * every frontend with the same backends (all NodePort addresses and
 * LoadBalancer IPs of a Service port). */
#define LB_MAGLEV_SIZE 1021

struct lb_maglev {
	__u32 backend_ids[LB_MAGLEV_SIZE];
};

/* Session affinity: the backend a client last used for a frontend. The
 * client is its network namespace (a pod, or the node's own processes),
 * which for pods is what kube-proxy's ClientIP means. */
struct lb4_affinity_key {
	__u64 netns_cookie;
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb6_affinity_key {
	__u64 netns_cookie;
	__u8 address[16];
	__be16 port;
	__u8 proto;
	__u8 pad[5];
};

struct lb_affinity {
	__u64 last_used_ns;
	__u32 backend_id;
	__u8 pad[4];
};

/* What a socket's traffic to a backend looked like before translation, so
 * getpeername() and UDP replies show the Service address. */
struct sock4_key {
	__u64 cookie;
	__be32 backend;
	__be16 backend_port;
	__u8 pad[2];
};

struct sock4_frontend {
	__be32 address;
	__be16 port;
	__u8 pad[2];
};

struct sock6_key {
	__u64 cookie;
	__u8 backend[16];
	__be16 backend_port;
	__u8 pad[6];
};

struct sock6_frontend {
	__u8 address[16];
	__be16 port;
	__u8 pad[2];
};

/* Connection tracking for traffic from outside the node (TC on the
 * node's external interfaces): the forward entry, keyed by the packet as
 * the client sent it, holds the backend it was sent to; the reverse
 * entry, keyed by the backend's reply, holds the frontend it must seem to
 * come from. */
struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct4_value {
	__be32 address;
	__be16 port;
	/* Forward entries of a flow to a remote backend: the source port it
	 * leaves with, from this node's address (nl_lb_node); 0: no SNAT. */
	__be16 snat_port;
	/* Forward entries: the backend's id, so that a flow whose backend
	 * has left (the id gone, or now another backend's) is sent to a live
	 * one instead of on into the void, as kube-proxy's conntrack
	 * cleanup does for UDP. Reverse entries: 0. */
	__u32 backend_id;
};

struct ct6_value {
	__u8 address[16];
	__be16 port;
	__be16 snat_port;
	__u32 backend_id;
};

/* SNAT for traffic from outside to a backend on another node: keyed by the
 * backend's reply (a ct4_key/ct6_key: from the backend to this node's
 * address and the flow's SNAT port), what it must become: from the
 * frontend, to the client, sent out of the interface the client's packets
 * came in on, to the MAC they came from. */
struct snat4_value {
	__be32 client;
	__be32 frontend;
	__be16 client_port;
	__be16 frontend_port;
	__u32 ifindex;
	__u8 client_mac[6];
	__u8 node_mac[6];
};

struct snat6_value {
	__u8 client[16];
	__u8 frontend[16];
	__be16 client_port;
	__be16 frontend_port;
	__u32 ifindex;
	__u8 client_mac[6];
	__u8 node_mac[6];
};

/* The single entry (key 0) of nl_lb_node: the node's addresses that SNATed
 * traffic leaves with (its InternalIPs, written by the agent); all zeros
 * where the node has none of the family, and then no SNAT is done. */
struct lb_node {
	__u8 v6[16];
	__be32 v4;
};

/* LoadBalancer IPs this node answers ARP requests (IPv4) and Neighbor
 * Solicitations (IPv6) for on its external interfaces, so that the link
 * delivers their traffic here: keys of nl_lb4_ann / nl_lb6_ann, whose
 * values count the answers given (__u64). */
struct lb4_announce_key {
	__be32 address;
};

struct lb6_announce_key {
	__u8 address[16];
};

/* An external interface, by ifindex (key of nl_lb_dev): the MAC the
 * answers carry. A broadcast or multicast request does not say it, so
 * the agent writes it when it attaches to the interface. */
struct lb_device {
	__u8 mac[6];
	__u8 pad[2];
};

#endif
