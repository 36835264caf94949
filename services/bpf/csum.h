/* Internet checksums (RFC 1071) for packets the TC programs build in
 * place: refusals and neighbor answers. */
#ifndef NETLET_CSUM_H
#define NETLET_CSUM_H

#include <linux/bpf.h>
#include <linux/in6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Ones' complement sum of `len` bytes at `p` (a multiple of 4), folded. */
static __always_inline __u16 csum(void *p, __u32 len, __u32 seed)
{
	__s64 sum = bpf_csum_diff(0, 0, p, len, seed);
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

/* The unfolded sum of an IPv6 pseudo-header (RFC 8200 8.1) for `len`
 * bytes of upper-layer protocol `proto`: the seed of its checksum. */
static __always_inline __u32 pseudo6_seed(const struct in6_addr *saddr, const struct in6_addr *daddr, __u32 len,
					  __u8 proto)
{
	struct {
		struct in6_addr saddr;
		struct in6_addr daddr;
		__be32 len;
		__u8 zero[3];
		__u8 proto;
	} pseudo;

	__builtin_memset(&pseudo, 0, sizeof(pseudo));
	pseudo.saddr = *saddr;
	pseudo.daddr = *daddr;
	pseudo.len = bpf_htonl(len);
	pseudo.proto = proto;
	return (__u32)bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
}

#endif
