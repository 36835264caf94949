/* The maps, pinned by name under the agent's versioned map directory so
 * that a restarted agent (and the programs an earlier one left attached)
 * share them. Sizes marked "set at load" are defaults the agent overrides
 * from its config. */
#ifndef NETLET_POLICY_MAP_DEFS_H
#define NETLET_POLICY_MAP_DEFS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"

/* Host-side veth ifindex -> the pod behind it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct pol_endpoint);
	__uint(max_entries, POL_ENDPOINT_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_endpts SEC(".maps");

/* The LPM trie `map`: struct `name`_key -> struct `name`_value, 65536
 * entries by default (set at load). The kernel makes LPM tries only
 * without preallocation. */
#define POL_LPM_TRIE(map, name)                         \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);    \
		__type(key, struct name##_key);         \
		__type(value, struct name##_value);     \
		__uint(max_entries, 65536);             \
		__uint(map_flags, BPF_F_NO_PREALLOC);   \
		__uint(pinning, LIBBPF_PIN_BY_NAME);    \
	} map SEC(".maps")

/* Address -> identity and CIDR class. */
POL_LPM_TRIE(nl_pol_ipcache, pol_ipcache);

/* Allow rules. */
POL_LPM_TRIE(nl_pol_rules, pol_rule);

/* Allowed flows (set at load). LRU: the oldest flows give way. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pol_ct_key);
	__type(value, struct pol_ct_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pol_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_config SEC(".maps");

/* Host-side veth ifindex -> its counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u32);
	__type(value, struct pol_endpoint_counters);
	__uint(max_entries, POL_ENDPOINT_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_ep_cnt SEC(".maps");

/* Policy slot -> flows it allowed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, POL_POLICY_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_slot_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_drops SEC(".maps");

/* How many drop events each CPU sent in the current second. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pol_event_budget);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nl_pol_budget SEC(".maps");

#endif
