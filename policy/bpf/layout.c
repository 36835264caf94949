/* Built for the host by build.rs and run there: prints the size and field
 * offsets of every struct in maps.h, which a Rust test compares with the
 * #[repr(C)] mirrors in policy/src/maps.rs. */
#include <stddef.h>
#include <stdio.h>
#include "maps.h"

#define SIZE(s) printf(#s " size %zu\n", sizeof(struct s))
#define FIELD(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))

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
	printf("POL_ENDPOINT_ENTRIES %u\n", POL_ENDPOINT_ENTRIES);
	printf("POL_POLICY_SLOTS %u\n", POL_POLICY_SLOTS);
	printf("POL_ISOLATED_INGRESS %u\n", POL_ISOLATED_INGRESS);
	printf("POL_ISOLATED_EGRESS %u\n", POL_ISOLATED_EGRESS);
	printf("POL_CLASS_BIT %u\n", POL_CLASS_BIT);
	printf("POL_REMOTE_ANY %u\n", POL_REMOTE_ANY);
	printf("POL_DIR_INGRESS %u\n", POL_DIR_INGRESS);
	printf("POL_DIR_EGRESS %u\n", POL_DIR_EGRESS);
	printf("POL_RULE_ANY_PORT_BITS %u\n", POL_RULE_ANY_PORT_BITS);
	printf("POL_RULE_PROTO_BITS %u\n", POL_RULE_PROTO_BITS);
	printf("POL_RULE_FULL_BITS %u\n", POL_RULE_FULL_BITS);
	printf("POL_SLOT_NONE %u\n", POL_SLOT_NONE);
	printf("POL_FROM_POD %u\n", POL_FROM_POD);
	printf("POL_TO_POD %u\n", POL_TO_POD);
	printf("POL_CT_FROM_NODE %u\n", POL_CT_FROM_NODE);
	printf("POL_DROP_NO_ENDPOINT %u\n", POL_DROP_NO_ENDPOINT);
	printf("POL_DROP_DENIED %u\n", POL_DROP_DENIED);
	printf("POL_DROP_REVOKED %u\n", POL_DROP_REVOKED);
	printf("POL_DROP_V4_MAPPED %u\n", POL_DROP_V4_MAPPED);
	return 0;
}
