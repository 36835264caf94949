/* Built for the host by build.rs and run there: prints the size and field
 * offsets of every struct in maps.h, and the constants the Rust side
 * repeats, which a Rust test compares with policy/src/maps.rs. */
#include <bpfkit/layout.h>
#include "maps.h"

int main(void)
{
	SIZE(pol_endpoint); FIELD(pol_endpoint, identity); FIELD(pol_endpoint, flags);
	SIZE(pol_ipcache_key); FIELD(pol_ipcache_key, prefixlen); FIELD(pol_ipcache_key, addr);
	SIZE(pol_ipcache_value); FIELD(pol_ipcache_value, identity); FIELD(pol_ipcache_value, cidr_class);
	SIZE(pol_rule_key); FIELD(pol_rule_key, prefixlen); FIELD(pol_rule_key, local); FIELD(pol_rule_key, remote);
	FIELD(pol_rule_key, direction); FIELD(pol_rule_key, proto); FIELD(pol_rule_key, port);
	SIZE(pol_rule_value); FIELD(pol_rule_value, policy_slot);
	SIZE(pol_ct_key); FIELD(pol_ct_key, saddr); FIELD(pol_ct_key, daddr); FIELD(pol_ct_key, sport);
	FIELD(pol_ct_key, dport); FIELD(pol_ct_key, proto); FIELD(pol_ct_key, origin);
	SIZE(pol_ct_value); FIELD(pol_ct_value, created_ns); FIELD(pol_ct_value, revision);
	FIELD(pol_ct_value, policy_slot); FIELD(pol_ct_value, flags);
	SIZE(pol_config); FIELD(pol_config, revision);
	SIZE(pol_endpoint_counters); FIELD(pol_endpoint_counters, allowed); FIELD(pol_endpoint_counters, denied);
	SIZE(pol_drop_event); FIELD(pol_drop_event, timestamp_ns); FIELD(pol_drop_event, ifindex);
	FIELD(pol_drop_event, local_identity); FIELD(pol_drop_event, remote_identity); FIELD(pol_drop_event, saddr);
	FIELD(pol_drop_event, daddr); FIELD(pol_drop_event, sport); FIELD(pol_drop_event, dport);
	FIELD(pol_drop_event, proto); FIELD(pol_drop_event, family); FIELD(pol_drop_event, direction);
	FIELD(pol_drop_event, reason);
	/* Constants the Rust side repeats. */
	CONST(POL_ENDPOINT_ENTRIES);
	CONST(POL_POLICY_SLOTS);
	CONST(POL_ISOLATED_INGRESS);
	CONST(POL_ISOLATED_EGRESS);
	CONST(POL_CLASS_BIT);
	CONST(POL_REMOTE_ANY);
	CONST(POL_DIR_INGRESS);
	CONST(POL_DIR_EGRESS);
	CONST(POL_RULE_ANY_PORT_BITS);
	CONST(POL_RULE_PROTO_BITS);
	CONST(POL_RULE_FULL_BITS);
	CONST(POL_SLOT_NONE);
	CONST(POL_FROM_POD);
	CONST(POL_TO_POD);
	CONST(POL_CT_FROM_NODE);
	CONST(POL_DROP_NO_ENDPOINT);
	CONST(POL_DROP_DENIED);
	CONST(POL_DROP_REVOKED);
	CONST(POL_DROP_V4_MAPPED);
	return 0;
}
