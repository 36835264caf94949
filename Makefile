# netlet: the two commands a newcomer needs are `make sandbox` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Where `cargo build --release` puts binaries (CARGO_TARGET_DIR moves it).
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),target)/release

.PHONY: deps build sandbox test vm-test unit lint fuzz bench-footprint bench-memory bench-cni bench-services bench-dns bench-policy bench-routing release clean

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build -p netlet

## Sets up what is missing and runs a one-machine cluster for networking.
sandbox: build
	target/debug/netlet sandbox $(SANDBOX_ARGS)

## Sets up what is missing and runs every test (privileged ones need root).
test:
	@scripts/install-deps.sh test
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast
	scripts/fuzz.sh

## The multi-node tests alone: QEMU VMs (TCG), one agent per VM, with
## their output (needs root). NETLET_VM_SCENARIOS=basic,native picks scenarios.
vm-test:
	@scripts/install-deps.sh vm
	$(CARGO) build -p netlet
	$(CARGO) test -p vm-tests --test cluster -- --nocapture

## The DNS fuzz targets alone: scripts/fuzz.sh [SECONDS per target].
fuzz:
	scripts/fuzz.sh

## Unit tests only: no root needed.
unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check

release: deps
	$(CARGO) build --release -p netlet

## RSS and CPU of the agent with every module on, idle and with 1,000 Services /
## 5,000 endpoints / 100 NetworkPolicies / 100 pods; the stripped binary's size.
bench-footprint: release
	$(CARGO) run --release -p bench --bin footprint -- --netlet target/release/netlet

## The former name of bench-footprint.
bench-memory: bench-footprint

## CNI ADD+DEL latency, netlet against the reference bridge + host-local plugins.
bench-cni: release
	@scripts/install-deps.sh bench
	$(CARGO) run --release -p bench --bin cni-latency -- --netlet target/release/netlet

## One Service change with 1k/5k/10k Services, netlet vs kube-proxy's iptables;
## connects through a ClusterIP vs straight to the pod.
bench-services:
	@scripts/install-deps.sh bench
	$(CARGO) build --release -p bench --bin service-update --bin service-connect
	target/release/service-update
	target/release/service-connect

## Cluster DNS with 10,000 Services: dnsperf queries/s and p50/p99 latency,
## netlet vs knot and unbound serving the same zone, each on one core; memory.
bench-dns: release
	@scripts/install-deps.sh bench
	$(CARGO) build --release -p bench --bin dns-perf
	target/release/dns-perf --netlet target/release/netlet

## Pod-to-pod TCP throughput and connection rate with 0 vs 1,000
## NetworkPolicies; time from a policy change in the API to enforcement.
bench-policy: release
	@scripts/install-deps.sh bench
	$(CARGO) build --release -p bench --bin policy-perf
	target/release/policy-perf --netlet target/release/netlet

## Cross-node pod-to-pod TCP throughput (iperf3) with routing.mode native
## and vxlan vs node-to-node on the same underlay, IPv4 and IPv6.
bench-routing: release
	@scripts/install-deps.sh bench
	$(CARGO) build --release -p bench --bin cross-node
	$(RELEASE_DIR)/cross-node --netlet $(RELEASE_DIR)/netlet

clean:
	$(CARGO) clean
