#!/usr/bin/env bash
# Installs the system packages netlet's build, sandbox and tests need, on
# Debian bookworm, as root. Idempotent and quiet when everything is there.
set -euo pipefail

# command-or-file : Debian package
needs=(
  "ip:iproute2"
  "clang:clang"
  "llc:llvm"
  "/usr/include/bpf/bpf_helpers.h:libbpf-dev"
  "pgrep:procps"
  "dig:dnsutils"
  "socat:socat"
  "ping:iputils-ping"
)
# Multi-node tests (vm-tests/) boot QEMU VMs (TCG; KVM not needed) on the
# Debian cloud kernel, from an initramfs built of busybox-static, netlet and
# the kernel's modules (cpio, kmod's modinfo). Part of `test`; `vm` alone
# installs just these.
vm_needs=("qemu-system-x86_64:qemu-system-x86" "/boot/vmlinuz-*-cloud-amd64:linux-image-cloud-amd64"
          "/bin/busybox:busybox-static" "cpio:cpio" "modinfo:kmod"
          "/etc/ssl/certs/ca-certificates.crt:ca-certificates")
case "${1:-}" in
  # Benchmarks compare against the reference CNI plugins, against
  # kube-proxy's iptables rules, and (cluster DNS, under dnsperf) against
  # knot and unbound; pod-to-pod throughput is measured with iperf3.
  bench) needs+=("/usr/lib/cni/bridge:containernetworking-plugins" "iptables-save:iptables"
                 "dnsperf:dnsperf" "/usr/sbin/knotd:knot" "/usr/sbin/unbound:unbound"
                 "iperf3:iperf3") ;;
  # Tests chain the reference portmap (iptables) and bandwidth plugins after
  # netlet, and run containerd (installed by containerd-bed.sh below).
  # `netlet install`'s unit file is checked with systemd-analyze verify.
  test) needs+=("/usr/lib/cni/portmap:containernetworking-plugins" "iptables-save:iptables"
                "systemd-analyze:systemd" "${vm_needs[@]}") ;;
  vm) needs+=("${vm_needs[@]}") ;;
  "") ;;
  *) echo "install-deps: unknown set $1 (bench, test or vm)" >&2; exit 2 ;;
esac
# kubectl: any kubectl will do (some images ship one outside Debian's).
command -v kubectl >/dev/null 2>&1 || needs+=("kubectl:kubernetes-client")

missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if [ "${cmd#/}" != "$cmd" ]; then
    # a path (or a glob: any match will do), not a command
    compgen -G "$cmd" >/dev/null || missing+=("$pkg")
  else
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo (the Rust toolchain) is missing; install it with rustup first" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The DNS benchmark runs knotd and unbound itself, in a network namespace
  # of its own; Debian starts them as system services on install, which
  # would leave DNS servers on this machine's port 53.
  for svc in knot unbound; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

if [ "${1:-}" = test ]; then
  "$(dirname "$0")/containerd-bed.sh" deps
fi
