#!/usr/bin/env bash
# A private containerd (Debian's 1.6 + runc) for integration tests that need a
# real container runtime driving a CNI plugin through `ctr run --cni`.
#
#   containerd-bed.sh deps             install containerd, runc, busybox-static
#   containerd-bed.sh start DIR        start containerd with everything under DIR
#   containerd-bed.sh image DIR        build + import a busybox image, print its ref
#   containerd-bed.sh ctr DIR ARGS...  run ctr against DIR's containerd
#   containerd-bed.sh stop DIR         remove containers, stop containerd, unmount
#
# DIR is a directory the caller owns (a test's temporary directory). Files in it:
#   config.toml  containerd.sock  containerd.pid  containerd.log  root/  state/
#   snapshotter  (overlayfs, or native when overlay cannot be mounted under DIR)
#
# Never touches a system containerd: its own socket, root and state, and no CRI.
# containerd 1.6 still puts a few things outside DIR that no config moves:
# shim sockets in /run/containerd/s/<hash of address+namespace+id> (so no
# collision), ctr's IO fifos in /run/containerd/fifo (`ctr run --fifo-dir`),
# runc state in /run/containerd/runc/<namespace> (`ctr run --runc-root`) and
# cgroups /<namespace>/<id> (`ctr run --cgroup`). Two beds running the same
# namespace/id at once collide in runc's state, and the loser's cleanup kills
# the winner's container: tests in parallel need their own ids, namespace
# (CONTAINERD_BED_NAMESPACE) or --runc-root.
#
# `ctr run --cni` (1.6) always reads the first file in /etc/cni/net.d and looks
# for plugins in /opt/cni/bin then /usr/lib/cni (Debian), so tests using it
# share that directory. It calls CNI DEL only when a foreground (not -d) run
# ends; `stop` never calls DEL.
set -euo pipefail

NS=${CONTAINERD_BED_NAMESPACE:-netlet-test}
IMAGE_REF=${CONTAINERD_BED_IMAGE:-localhost/netlet-busybox:test}
START_TIMEOUT=${CONTAINERD_BED_TIMEOUT:-30}   # seconds

die() { echo "containerd-bed: $*" >&2; exit 1; }

need_dir() {
  [ -n "${1:-}" ] || die "missing DIR argument"
  [ -d "$1" ] || die "$1 is not a directory"
  # Absolute, because config.toml and ctr --address need absolute paths.
  realpath "$1"
}

# ctr against DIR's containerd, in our namespace, with its snapshotter.
bed_ctr() {
  local dir=$1; shift
  CONTAINERD_SNAPSHOTTER=$(cat "$dir/snapshotter" 2>/dev/null || echo overlayfs) \
    ctr --address "$dir/containerd.sock" --namespace "$NS" "$@"
}

# Polls COMMAND every 0.1 s until it succeeds or SECONDS elapse.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# Whether PID is a live process (a zombie is not: on hosts whose init reaps
# slowly, an exited containerd lingers as one and `kill -0` still succeeds).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Whether PID is the containerd started for DIR (guards against pid reuse).
is_our_containerd() {
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--config $2/config.toml"
}

dead() { ! alive "$1"; }

cmd_deps() {
  local missing=()
  command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 \
    && [ -x /usr/bin/containerd-shim-runc-v2 ] || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  # The static build specifically: the image has no libc. (Package `busybox`
  # also installs /bin/busybox, dynamically linked; apt swaps it out.)
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
    || missing+=(busybox-static)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run as root to install them"

  echo "containerd-bed: installing ${missing[*]}" >&2
  # Debian's containerd postinst enables containerd.service and, when systemd
  # is running, starts it. Our instance would not collide with it (own socket,
  # root, state), but a test should not start a system daemon as a side effect:
  # a temporary policy-rc.d (honoured by deb-systemd-invoke) forbids the start.
  # The unit is still enabled and would start on the next boot.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ -d /run/systemd/system ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  # Quiet unless it fails (debconf chatters on stderr even with -qq).
  local log; log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    die "apt-get install ${missing[*]} failed"
  fi
  rm -f "$log"
  if [ -n "$made_policy" ]; then rm -f "$policy"; trap - EXIT; fi
}

# Whether overlay can be mounted on DIR's filesystem (not on overlay or some
# tmpfs setups, e.g. inside another container); otherwise use `native`.
pick_snapshotter() {
  local dir=$1 p
  p=$(mktemp -d "$dir/.overlay-probe.XXXXXX")
  mkdir "$p/l" "$p/u" "$p/w" "$p/m"
  if mount -t overlay overlay -o "lowerdir=$p/l,upperdir=$p/u,workdir=$p/w" "$p/m" 2>/dev/null; then
    umount "$p/m"
    echo overlayfs
  else
    echo native
  fi
  rm -rf "$p"
}

cmd_start() {
  local dir; dir=$(need_dir "${1:-}")
  [ "$(id -u)" -eq 0 ] || die "containerd needs root"
  command -v containerd >/dev/null 2>&1 || die "containerd not installed (run: $0 deps)"
  if [ -s "$dir/containerd.pid" ] && is_our_containerd "$(cat "$dir/containerd.pid")" "$dir"; then
    die "a containerd (pid $(cat "$dir/containerd.pid")) is already running for $dir"
  fi
  # unix socket paths are limited to 108 bytes; the ttrpc one is the longest.
  [ ${#dir} -le 80 ] || die "$dir is too long a path for containerd's sockets"
  mkdir -p "$dir/root" "$dir/state" "$dir/opt"
  pick_snapshotter "$dir" >"$dir/snapshotter"

  # Plugins that would look outside DIR or cannot work here are disabled: CRI
  # (its own CNI, streaming server, /etc/cni) and snapshotters other than
  # overlayfs/native. (Not the legacy v1 runtime: 1.6's tasks service fails
  # to load without it; its runc root is moved under DIR instead.)
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
temp = "$dir/tmp"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = "$dir/debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "$dir/runc-v1"
  [plugins."io.containerd.runtime.v2.task"]
    platforms = ["linux/$(dpkg --print-architecture)"]
EOF
  mkdir -p "$dir/tmp"

  # setsid: the daemon must not get the test's terminal signals (Ctrl-C) or
  # die with the shell that started it; `stop` ends it.
  setsid containerd --config "$dir/config.toml" </dev/null >>"$dir/containerd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/containerd.pid"

  # Poll until it answers; give up at once if it exits (bad config, socket
  # in use). --connect-timeout: ctr otherwise blocks up to 10 s dialling.
  local deadline=$((SECONDS + START_TIMEOUT)) why=
  until ctr --connect-timeout 1s --address "$dir/containerd.sock" version >/dev/null 2>&1; do
    if ! alive "$pid"; then why="containerd exited"; break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then why="containerd did not come up within ${START_TIMEOUT}s"; break; fi
    sleep 0.1
  done
  if [ -n "$why" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
    echo "containerd-bed: $why; last lines of $dir/containerd.log:" >&2
    tail -n 5 "$dir/containerd.log" >&2 || true
    exit 1
  fi
}

# Builds an OCI image layout from /bin/busybox (no network) and imports it.
cmd_image() {
  local dir; dir=$(need_dir "${1:-}")
  [ -S "$dir/containerd.sock" ] || die "no containerd socket in $dir (run: $0 start $dir)"
  local bb=/bin/busybox
  # The image has no libc, so it must be busybox-static's build.
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
    || die "busybox-static is not installed (run: $0 deps)"

  local work="$dir/image-build" arch
  arch=$(dpkg --print-architecture)   # amd64, arm64: the same names OCI uses
  rm -rf "$work"
  mkdir -p "$work/rootfs/bin" "$work/layout/blobs/sha256"
  local r="$work/rootfs"
  cp "$bb" "$r/bin/busybox"
  # Every applet as a symlink (sh, ip, sleep, cat, ping, wget, nc, ...).
  local applet
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
  done
  # Mount points and files runc and the applets expect.
  mkdir -p "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/etc" "$r/root" "$r/run" "$r/var"
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  : >"$r/etc/hosts"; : >"$r/etc/resolv.conf"

  # Uncompressed layer, so its digest is also its diff_id. Reproducible.
  local layer="$work/layer.tar"
  tar --create --file "$layer" --directory "$r" --sort=name --mtime=@0 \
    --owner=0 --group=0 --numeric-owner .
  local layer_sha layer_size
  layer_sha=$(sha256sum "$layer" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layer")
  mv "$layer" "$work/layout/blobs/sha256/$layer_sha"

  # blob FILE: stores FILE under its digest, prints "sha256:HEX SIZE".
  blob() {
    local sha size
    sha=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1")
    mv "$1" "$work/layout/blobs/sha256/$sha"
    echo "sha256:$sha $size"
  }

  printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sha\"]},\
\"history\":[{\"created_by\":\"containerd-bed.sh image (busybox-static)\"}]}" >"$work/config.json"
  local config_digest config_size
  read -r config_digest config_size < <(blob "$work/config.json")

  printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$layer_sha\",\"size\":$layer_size}]}" \
    >"$work/manifest.json"
  local manifest_digest manifest_size
  read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

  # The ref.name annotation is a full reference, so ctr 1.6 import keeps it
  # as the image name as is (no --base-name / --index-name needed).
  printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\
\"annotations\":{\"org.opencontainers.image.ref.name\":\"$IMAGE_REF\"}}]}" >"$work/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

  local tarball="$dir/netlet-busybox.oci.tar"
  tar --create --file "$tarball" --directory "$work/layout" --sort=name --mtime=@0 \
    --owner=0 --group=0 --numeric-owner oci-layout index.json blobs
  rm -rf "$work"

  # Import unpacks into the snapshotter `run` will use (CONTAINERD_SNAPSHOTTER).
  bed_ctr "$dir" images import "$tarball" >/dev/null
  bed_ctr "$dir" images ls -q | grep -qxF "$IMAGE_REF" || die "import did not create $IMAGE_REF"
  echo "$IMAGE_REF"
}

# Mount points under DIR (containerd's snapshot/rootfs mounts), deepest first.
mounts_under() {
  local dir=$1
  findmnt -rn -o TARGET | sed 's/\\x20/ /g' | awk -v d="$dir/" 'index($0, d) == 1' \
    | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

cmd_stop() {
  local dir; dir=$(need_dir "${1:-}")
  local pid='' ns id
  [ -s "$dir/containerd.pid" ] && pid=$(cat "$dir/containerd.pid")
  if [ -n "$pid" ] && ! is_our_containerd "$pid" "$dir"; then pid=; fi

  if [ -n "$pid" ]; then
    # Every task and container in every namespace (a test may have used more
    # than ours). `task rm -f` SIGKILLs a running task and waits for it.
    # No CNI DEL happens here: only a foreground `ctr run --cni` calls DEL.
    for ns in $(ctr --address "$dir/containerd.sock" namespaces ls -q 2>/dev/null); do
      for id in $(ctr --address "$dir/containerd.sock" -n "$ns" tasks ls -q 2>/dev/null); do
        ctr --address "$dir/containerd.sock" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
      done
      for id in $(ctr --address "$dir/containerd.sock" -n "$ns" containers ls -q 2>/dev/null); do
        ctr --address "$dir/containerd.sock" -n "$ns" containers rm "$id" >/dev/null 2>&1 || true
      done
    done

    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 10 dead "$pid"; then
      echo "containerd-bed: containerd $pid ignored SIGTERM, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait_for 5 dead "$pid" || die "containerd $pid would not die"
    fi
  fi
  rm -f "$dir/containerd.pid"

  # Shims outlive containerd; those started with our address are ours.
  local p cmdline
  for p in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case $cmdline in
      *containerd-shim*"-address $dir/containerd.sock "*)
        kill -KILL "${p#/proc/}" 2>/dev/null \
          && echo "containerd-bed: killed leftover shim ${p#/proc/}" >&2 ;;
    esac
  done
  # Tasks that could not be deleted (containerd died, or a shim hung) leave a
  # bundle behind. runc delete --force kills the container's processes and
  # removes its cgroups and runc state (which would otherwise make the same
  # id fail with "container with given ID already exists" in later beds);
  # the bundle's options.json names a --runc-root the test may have passed,
  # and its address file the shim's socket in /run/containerd/s.
  local bundle root sock
  for bundle in "$dir"/state/io.containerd.runtime.v2.task/*/*/; do
    [ -f "$bundle/config.json" ] || continue
    bundle=${bundle%/}; id=${bundle##*/}; ns=${bundle%/*}; ns=${ns##*/}
    root=$(sed -n 's/.*"root":"\([^"]*\)".*/\1/p' "$bundle/options.json" 2>/dev/null || true)
    runc --root "${root:-/run/containerd/runc}/$ns" delete --force "$id" >/dev/null 2>&1 \
      && echo "containerd-bed: deleted leftover container $ns/$id" >&2
    sock=$(sed -n 's|^unix://||p' "$bundle/address" 2>/dev/null || true)
    case $sock in /run/containerd/s/*) rm -f "$sock" ;; esac
  done

  # runc leaves the namespace's parent cgroup (/<namespace>, ctr's default
  # parent) in every hierarchy; rmdir only removes it once it is empty, i.e.
  # when no other bed has containers in the same namespace.
  rmdir /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS" 2>/dev/null || true

  # Rootfs (overlay) mounts of tasks that were not deleted, deepest first.
  local m
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null \
      || echo "containerd-bed: could not unmount $m" >&2
  done < <(mounts_under "$dir")
  [ -z "$(mounts_under "$dir")" ] || die "mounts remain under $dir"
}

case ${1:-} in
  deps) cmd_deps ;;
  start) cmd_start "${2:-}" ;;
  image) cmd_image "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  ctr) [ -n "${2:-}" ] || die "missing DIR argument"
       d=$(need_dir "$2"); shift 2; bed_ctr "$d" "$@" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
