#!/usr/bin/env bash
# Writes the seed queries of the byte-level fuzz targets into DIR: what
# stub resolvers ask of the zone in fuzz/src/lib.rs (every kind of name,
# with and without EDNS, sized for UDP and TCP), what others ask, and the
# malformed messages a server meets. Seeds are spelled here in a few lines
# each rather than checked in as binary files nobody can review.
#
#   fuzz/seeds.sh DIR
set -euo pipefail

dir=${1:?usage: fuzz/seeds.sh DIR}
mkdir -p "$dir"

# Everything below builds hex; `seed` turns it into bytes.
h16() { printf '%04x' "$1"; }

# A dotted name as wire labels (no escapes: the seeds do not need them).
qname() {
  local label out="" byte i
  for label in ${1//./ }; do
    printf -v byte '%02x' ${#label}
    out+=$byte
    for ((i = 0; i < ${#label}; i++)); do
      printf -v byte '%02x' "'${label:i:1}"
      out+=$byte
    done
  done
  printf '%s00' "$out"
}

# message FLAGS QDCOUNT ANCOUNT NSCOUNT ARCOUNT BODY...: ID 0x4242.
message() {
  local flags=$1 qd=$2 an=$3 ns=$4 ar=$5
  shift 5
  printf '4242%s%s%s%s%s%s' "$flags" "$(h16 "$qd")" "$(h16 "$an")" "$(h16 "$ns")" "$(h16 "$ar")" "$*"
}

# question NAME TYPE [CLASS]
question() { printf '%s%s%s' "$(qname "$1")" "$(h16 "$2")" "$(h16 "${3:-1}")"; }

# opt PAYLOAD [VERSION [OWNER]]: an OPT record, owned by the root unless told.
opt() { printf '%s0029%s00%02x00000000' "${3:-00}" "$(h16 "$1")" "${2:-0}"; }

# query NAME TYPE [PAYLOAD [VERSION]]: a stub resolver's query (RD set),
# with EDNS when PAYLOAD is given.
query() {
  if [ $# -ge 3 ]; then
    message 0100 1 0 0 1 "$(question "$1" "$2")" "$(opt "$3" "${4:-0}")"
  else
    message 0100 1 0 0 0 "$(question "$1" "$2")"
  fi
}

seed() {
  local file=$1
  shift
  local hex=$*
  # shellcheck disable=SC2001 # ${hex//} has no back-references
  printf '%b' "$(sed 's/../\\x&/g' <<<"${hex// /}")" >"$dir/$file"
}

A=1 CNAME=5 SOA=6 PTR=12 TXT=16 AAAA=28 SRV=33 ANY=255
svc=demo.svc.cluster.local
label63=$(printf 'a%.0s' {1..63})
# Names of 255 wire bytes, the most RFC 1035 allows, and of 256.
name255=$label63.$label63.$label63.${label63:0:61}
name256=$label63.$label63.$label63.${label63:0:62}

# The zone, as clients ask it.
seed a-web "$(query web.$svc $A)"
seed aaaa-web-edns "$(query web.$svc $AAAA 1232)"
seed a-mixed-case "$(query WeB.DeMo.SvC.Cluster.LOCAL $A)"
seed srv-http "$(query _http._tcp.web.$svc $SRV)"
seed srv-dns-udp "$(query _dns._udp.web.$svc $SRV 1232)"
seed a-headless "$(query db.$svc $A)"
seed aaaa-hostname "$(query db-0.db.$svc $AAAA)"
seed srv-headless "$(query _sql._tcp.db.$svc $SRV 4096)"
seed srv-mid-classic "$(query _http._tcp.mid.$svc $SRV)"
seed srv-mid-edns-600 "$(query _http._tcp.mid.$svc $SRV 600)"
seed srv-many-tcp "$(query _http._tcp.many.$svc $SRV 65535)"
seed a-many "$(query many.$svc $A 1232)"
seed a-alias-chain "$(query alias.$svc $A)"
seed a-alias-loop "$(query loop-a.$svc $A)"
seed cname-external "$(query upstream.$svc $CNAME)"
seed a-external "$(query upstream.$svc $A 1232)"
seed ptr-v4 "$(query 10.0.43.10.in-addr.arpa $PTR)"
seed ptr-v6 "$(query a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa $PTR)"
seed a-pod "$(query 10-42-1-9.demo.pod.cluster.local $A)"
seed aaaa-pod "$(query fd00-42-1--9.demo.pod.cluster.local $AAAA 1232)"
seed txt-version "$(query dns-version.cluster.local $TXT)"
seed soa-apex "$(query cluster.local $SOA 1232)"
seed any-interior "$(query $svc $ANY)"
seed a-nxdomain "$(query missing.$svc $A)"
seed a-bad-version "$(query web.$svc $A 1232 1)"
seed txt-chaos "$(message 0100 1 0 0 0 "$(question version.bind $TXT 3)")"

# Names that are not the zone's: forwarded.
seed a-outside "$(query example.org $A 1232)"
seed a-root "$(query . $A)"
seed a-name-255 "$(query "$name255" $A)"
seed a-name-256 "$(query "$name256" $A)"
seed a-dot-in-label "$(message 0100 1 0 0 0 "03612e62$(qname $svc)00010001")"

# Messages a server meets that are no plain query.
seed runt "4242010000010000000000"
seed response "$(message 8180 1 0 0 0 "$(question web.$svc $A)")"
seed opcode-notify "$(message 2400 1 0 0 0 "$(question cluster.local $SOA)")"
seed counts-65535 "$(message 0100 65535 65535 65535 65535 "$(question web.$svc $A)")"
seed ar-65535-one-opt "$(message 0100 1 0 0 65535 "$(question web.$svc $A)" "$(opt 1232)")"
seed two-opts "$(message 0100 1 0 0 2 "$(question web.$svc $A)" "$(opt 1232)" "$(opt 512)")"
seed opt-not-root "$(message 0100 1 0 0 1 "$(question web.$svc $A)" "$(opt 1232 0 "$(qname x)")")"
# The question's name points at itself (offset 12)...
seed loop-in-question "$(message 0100 1 0 0 0 c00c00010001)"
# ... and so does the additional record's owner, after the 4-byte question.
seed loop-in-additional "$(message 0100 1 0 0 1 0000010001 c011 0001000100000000 0000)"
