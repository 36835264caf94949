/* Built for the host by build.rs and run there: prints the size and field
 * offsets of every struct in lb.h, which a Rust test compares with the
 * #[repr(C)] mirrors in services/src/maps.rs. */
#include <bpfkit/layout.h>
#include "lb.h"

int main(void)
{
	SIZE(lb4_key); FIELD(lb4_key, address); FIELD(lb4_key, port); FIELD(lb4_key, proto); FIELD(lb4_key, scope); FIELD(lb4_key, slot);
	SIZE(lb6_key); FIELD(lb6_key, address); FIELD(lb6_key, port); FIELD(lb6_key, proto); FIELD(lb6_key, scope); FIELD(lb6_key, slot);
	SIZE(lb_slot); FIELD(lb_slot, backend_id); FIELD(lb_slot, count); FIELD(lb_slot, flags);
	FIELD(lb_slot, affinity_timeout);
	SIZE(lb4_source_key); FIELD(lb4_source_key, prefixlen); FIELD(lb4_source_key, frontend);
	FIELD(lb4_source_key, port); FIELD(lb4_source_key, proto); FIELD(lb4_source_key, source);
	SIZE(lb6_source_key); FIELD(lb6_source_key, prefixlen); FIELD(lb6_source_key, frontend);
	FIELD(lb6_source_key, port); FIELD(lb6_source_key, proto); FIELD(lb6_source_key, source);
	SIZE(lb4_affinity_key); FIELD(lb4_affinity_key, netns_cookie); FIELD(lb4_affinity_key, address);
	FIELD(lb4_affinity_key, port); FIELD(lb4_affinity_key, proto);
	SIZE(lb6_affinity_key); FIELD(lb6_affinity_key, netns_cookie); FIELD(lb6_affinity_key, address);
	FIELD(lb6_affinity_key, port); FIELD(lb6_affinity_key, proto);
	SIZE(lb_affinity); FIELD(lb_affinity, last_used_ns); FIELD(lb_affinity, backend_id);
	SIZE(lb4_backend); FIELD(lb4_backend, address); FIELD(lb4_backend, port); FIELD(lb4_backend, flags);
	SIZE(lb6_backend); FIELD(lb6_backend, address); FIELD(lb6_backend, port); FIELD(lb6_backend, flags);
	SIZE(sock4_key); FIELD(sock4_key, cookie); FIELD(sock4_key, backend); FIELD(sock4_key, backend_port);
	SIZE(sock4_frontend); FIELD(sock4_frontend, address); FIELD(sock4_frontend, port);
	SIZE(sock6_key); FIELD(sock6_key, cookie); FIELD(sock6_key, backend); FIELD(sock6_key, backend_port);
	SIZE(sock6_frontend); FIELD(sock6_frontend, address); FIELD(sock6_frontend, port);
	SIZE(ct4_key); FIELD(ct4_key, saddr); FIELD(ct4_key, daddr); FIELD(ct4_key, sport); FIELD(ct4_key, dport);
	FIELD(ct4_key, proto);
	SIZE(ct6_key); FIELD(ct6_key, saddr); FIELD(ct6_key, daddr); FIELD(ct6_key, sport); FIELD(ct6_key, dport);
	FIELD(ct6_key, proto);
	SIZE(ct4_value); FIELD(ct4_value, address); FIELD(ct4_value, port); FIELD(ct4_value, snat_port);
	FIELD(ct4_value, backend_id);
	SIZE(ct6_value); FIELD(ct6_value, address); FIELD(ct6_value, port); FIELD(ct6_value, snat_port);
	FIELD(ct6_value, backend_id);
	SIZE(snat4_value); FIELD(snat4_value, client); FIELD(snat4_value, frontend); FIELD(snat4_value, client_port);
	FIELD(snat4_value, frontend_port); FIELD(snat4_value, ifindex); FIELD(snat4_value, client_mac);
	FIELD(snat4_value, node_mac);
	SIZE(snat6_value); FIELD(snat6_value, client); FIELD(snat6_value, frontend); FIELD(snat6_value, client_port);
	FIELD(snat6_value, frontend_port); FIELD(snat6_value, ifindex); FIELD(snat6_value, client_mac);
	FIELD(snat6_value, node_mac);
	SIZE(lb_node); FIELD(lb_node, v6); FIELD(lb_node, v4);
	SIZE(lb4_announce_key); FIELD(lb4_announce_key, address);
	SIZE(lb6_announce_key); FIELD(lb6_announce_key, address);
	SIZE(lb_device); FIELD(lb_device, mac);
	SIZE(lb_maglev); FIELD(lb_maglev, backend_ids);
	return 0;
}
