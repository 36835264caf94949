/* Socket-level load balancing (cgroup sock_addr hooks): a connect() or
 * UDP sendmsg() to a Service frontend is pointed at one of its backends
 * before the kernel routes anything, so no packet is ever NATed; recvmsg()
 * and getpeername() show the Service address again. Runs for every
 * process in the cgroup it is attached to: pods and the node alike. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "lb.h"
#include "maps.h"

#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ULL

/* The verifier only allows 4-byte loads and stores of user_ip6. */
static __always_inline void ip6_load(__u8 *dst, const struct bpf_sock_addr *ctx)
{
	__u32 *d = (__u32 *)dst;
	d[0] = ctx->user_ip6[0];
	d[1] = ctx->user_ip6[1];
	d[2] = ctx->user_ip6[2];
	d[3] = ctx->user_ip6[3];
}

static __always_inline void ip6_store(struct bpf_sock_addr *ctx, const __u8 *src)
{
	const __u32 *s = (const __u32 *)src;
	ctx->user_ip6[0] = s[0];
	ctx->user_ip6[1] = s[1];
	ctx->user_ip6[2] = s[2];
	ctx->user_ip6[3] = s[3];
}

/* Picks a backend for a frontend entry found at slot 0: its slot. */
static __always_inline __u16 pick(const struct lb_slot *svc)
{
	return bpf_get_prandom_u32() % svc->count + 1;
}

/* The backend this client used last, if the Service has affinity, the
 * entry has not timed out and the backend still exists (0: none). */
static __always_inline __u32 affine(void *map, const void *key, const struct lb_slot *svc, void *backends)
{
	struct lb_affinity *a;

	if (!svc->affinity_timeout)
		return 0;
	a = bpf_map_lookup_elem(map, key);
	if (!a || bpf_ktime_get_ns() - a->last_used_ns > svc->affinity_timeout * NSEC_PER_SEC)
		return 0;
	if (!bpf_map_lookup_elem(backends, &a->backend_id))
		return 0;
	return a->backend_id;
}

static __always_inline void remember(void *map, const void *key, const struct lb_slot *svc, __u32 backend_id)
{
	struct lb_affinity a;

	if (!svc->affinity_timeout)
		return;
	__builtin_memset(&a, 0, sizeof(a));
	a.last_used_ns = bpf_ktime_get_ns();
	a.backend_id = backend_id;
	bpf_map_update_elem(map, key, &a, BPF_ANY);
}

/* 1: carry on (translated or not a Service); 0: refuse, with the errno
 * set through bpf_set_retval. */
static __always_inline int translate4(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct lb4_key key;
	struct lb4_affinity_key aff;
	struct sock4_key rev;
	struct sock4_frontend front;
	struct lb_slot *svc, *slot;
	struct lb4_backend *be;
	__u32 backend_id;

	__builtin_memset(&key, 0, sizeof(key));
	key.address = ctx->user_ip4;
	key.port = (__be16)ctx->user_port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&nl_lb4_svc, &key);
	if (!svc)
		return 1;
	if (svc->count == 0) {
		count_empty(&nl_lb4_empty, &key);
		goto refuse;
	}
	__builtin_memset(&aff, 0, sizeof(aff));
	aff.netns_cookie = bpf_get_netns_cookie(ctx);
	aff.address = key.address;
	aff.port = key.port;
	aff.proto = proto;
	backend_id = affine(&nl_lb4_aff, &aff, svc, &nl_lb4_be);
	if (!backend_id) {
		key.slot = pick(svc);
		slot = bpf_map_lookup_elem(&nl_lb4_svc, &key);
		if (!slot)
			goto refuse;
		backend_id = slot->backend_id;
	}
	be = bpf_map_lookup_elem(&nl_lb4_be, &backend_id);
	if (!be)
		goto refuse;
	remember(&nl_lb4_aff, &aff, svc, backend_id);

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.cookie = bpf_get_socket_cookie(ctx);
	rev.backend = be->address;
	rev.backend_port = be->port;
	__builtin_memset(&front, 0, sizeof(front));
	front.address = ctx->user_ip4;
	front.port = (__be16)ctx->user_port;
	bpf_map_update_elem(&nl_sock4_rev, &rev, &front, BPF_ANY);

	ctx->user_ip4 = be->address;
	ctx->user_port = be->port;
	return 1;
refuse:
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

static __always_inline int translate6(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct lb6_key key;
	struct lb6_affinity_key aff;
	struct sock6_key rev;
	struct sock6_frontend front;
	struct lb_slot *svc, *slot;
	struct lb6_backend *be;
	__u32 backend_id;

	__builtin_memset(&key, 0, sizeof(key));
	ip6_load(key.address, ctx);
	key.port = (__be16)ctx->user_port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&nl_lb6_svc, &key);
	if (!svc)
		return 1;
	if (svc->count == 0) {
		count_empty(&nl_lb6_empty, &key);
		goto refuse;
	}
	__builtin_memset(&aff, 0, sizeof(aff));
	aff.netns_cookie = bpf_get_netns_cookie(ctx);
	__builtin_memcpy(aff.address, key.address, 16);
	aff.port = key.port;
	aff.proto = proto;
	backend_id = affine(&nl_lb6_aff, &aff, svc, &nl_lb6_be);
	if (!backend_id) {
		key.slot = pick(svc);
		slot = bpf_map_lookup_elem(&nl_lb6_svc, &key);
		if (!slot)
			goto refuse;
		backend_id = slot->backend_id;
	}
	be = bpf_map_lookup_elem(&nl_lb6_be, &backend_id);
	if (!be)
		goto refuse;
	remember(&nl_lb6_aff, &aff, svc, backend_id);

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rev.backend, be->address, 16);
	rev.backend_port = be->port;
	__builtin_memset(&front, 0, sizeof(front));
	__builtin_memcpy(front.address, key.address, 16);
	front.port = key.port;
	bpf_map_update_elem(&nl_sock6_rev, &rev, &front, BPF_ANY);

	ip6_store(ctx, be->address);
	ctx->user_port = be->port;
	return 1;
refuse:
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

/* Back from a backend to the Service address the socket asked for. */
static __always_inline int reverse4(struct bpf_sock_addr *ctx)
{
	struct sock4_key rev;
	struct sock4_frontend *front;

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.cookie = bpf_get_socket_cookie(ctx);
	rev.backend = ctx->user_ip4;
	rev.backend_port = (__be16)ctx->user_port;
	front = bpf_map_lookup_elem(&nl_sock4_rev, &rev);
	if (front) {
		ctx->user_ip4 = front->address;
		ctx->user_port = front->port;
	}
	return 1;
}

static __always_inline int reverse6(struct bpf_sock_addr *ctx)
{
	struct sock6_key rev;
	struct sock6_frontend *front;

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.cookie = bpf_get_socket_cookie(ctx);
	ip6_load(rev.backend, ctx);
	rev.backend_port = (__be16)ctx->user_port;
	front = bpf_map_lookup_elem(&nl_sock6_rev, &rev);
	if (front) {
		ip6_store(ctx, front->address);
		ctx->user_port = front->port;
	}
	return 1;
}

SEC("cgroup/connect4")
int netlet_connect4(struct bpf_sock_addr *ctx)
{
	return translate4(ctx, ctx->protocol);
}

SEC("cgroup/connect6")
int netlet_connect6(struct bpf_sock_addr *ctx)
{
	return translate6(ctx, ctx->protocol);
}

SEC("cgroup/sendmsg4")
int netlet_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate4(ctx, IPPROTO_UDP);
}

SEC("cgroup/sendmsg6")
int netlet_sendmsg6(struct bpf_sock_addr *ctx)
{
	return translate6(ctx, IPPROTO_UDP);
}

SEC("cgroup/recvmsg4")
int netlet_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/recvmsg6")
int netlet_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}

SEC("cgroup/getpeername4")
int netlet_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/getpeername6")
int netlet_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
