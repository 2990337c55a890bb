#!/usr/bin/env bash
# Try hostnet without touching your host.
#
# Starts hostnetd in a throwaway network namespace that plays "the host",
# joined by a veth to a second one that plays "the outside" (198.51.100.1,
# with a small web server when python3 is installed), all inside a mount
# namespace of its own; then opens a shell in "the host" with hostnet on
# its PATH and HOSTNET_SOCKET set. When the shell exits, everything goes:
# the daemon, its namespaces, devices, mounts and nftables tables, and the
# processes left running in them. The real host's links, routes, nftables,
# /run and /etc are never touched.
#
#   sudo scripts/try.sh               a shell in the try-out (exit it to clean up)
#   sudo scripts/try.sh CMD [ARG...]  run CMD there instead (its status is the script's)
#   sudo make try                     builds, then the shell
#
# Needs root (namespaces), unshare and nsenter (util-linux), ip (iproute2).
# Uses bin/hostnetd and bin/hostnet of the repository (built if missing), or
# those in HOSTNET_TRY_BIN.
set -euo pipefail

readonly HOST_ADDR=198.51.100.2 OUTSIDE_ADDR=198.51.100.1

if [ "${HOSTNET_TRY_INNER:-}" != 1 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "try.sh needs root (it creates network namespaces): sudo $0 $*" >&2
		exit 1
	fi
	for tool in unshare nsenter ip; do
		command -v "$tool" >/dev/null || { echo "try.sh needs $tool (util-linux, iproute2)" >&2; exit 1; }
	done
	repo=$(cd "$(dirname "$0")/.." && pwd)
	bin=${HOSTNET_TRY_BIN:-$repo/bin}
	if [ ! -x "$bin/hostnetd" ] || [ ! -x "$bin/hostnet" ]; then
		echo "building hostnetd and hostnet into $bin" >&2
		(cd "$repo" && go build -o "$bin/" ./cmd/hostnetd ./cmd/hostnet)
	fi
	# A mount namespace of its own, private: what is mounted in it (the
	# namespaces, a tmpfs) is never seen by the host and goes with it.
	exec unshare --mount --propagation private -- \
		env HOSTNET_TRY_INNER=1 HOSTNET_TRY_BIN="$(cd "$bin" && pwd)" "$0" "$@"
fi

bin=$HOSTNET_TRY_BIN
dir=$(mktemp -d "${TMPDIR:-/tmp}/hostnet-try.XXXXXX")
mount -t tmpfs -o mode=0755 hostnet-try "$dir"
host=$dir/host.ns outside=$dir/outside.ns
sock=$dir/hostnet.sock log=$dir/hostnetd.log
daemon_pid= web_pid=

# kill_in_namespaces ends every process whose network namespace is one of
# the try-out's (the host, the outside, the namespaces hostnetd made).
kill_in_namespaces() {
	local inodes=() f pid ino sig
	for f in "$host" "$outside" "$dir"/run/netns/*; do
		[ -e "$f" ] && inodes+=("$(stat -L -c %i "$f" 2>/dev/null || true)")
	done
	[ ${#inodes[@]} -gt 0 ] || return 0
	for sig in TERM KILL; do
		for pid in $(ls /proc | grep -E '^[0-9]+$'); do
			[ "$pid" = $$ ] && continue
			ino=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || continue
			for f in "${inodes[@]}"; do
				if [ "$ino" = "$f" ]; then kill "-$sig" "$pid" 2>/dev/null || true; fi
			done
		done
		if [ $sig = TERM ]; then sleep 0.5; fi
	done
}

cleanup() {
	local status=$?
	set +e
	trap - EXIT INT TERM
	if [ -n "$daemon_pid" ]; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	if [ -n "$web_pid" ]; then kill "$web_pid" 2>/dev/null; fi
	kill_in_namespaces
	wait 2>/dev/null
	# Detaching the mounts drops the last references to the namespaces:
	# the kernel destroys them with every device and table inside.
	umount -R -l "$dir" 2>/dev/null
	rmdir "$dir" 2>/dev/null
	echo "hostnet try-out removed" >&2
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The host and the outside, joined by a veth.
touch "$host" "$outside"
unshare --net="$host" true
unshare --net="$outside" true
nsenter --net="$host" ip link add uplink0 type veth peer name ext0
nsenter --net="$host" ip link set ext0 netns "$outside"
nsenter --net="$host" sh -c "ip link set lo up && ip addr add $HOST_ADDR/24 dev uplink0 && ip link set uplink0 up && ip route add default via $OUTSIDE_ADDR"
nsenter --net="$outside" sh -c "ip link set lo up && ip addr add $OUTSIDE_ADDR/24 dev ext0 && ip link set ext0 up"
echo "nameserver $OUTSIDE_ADDR" >"$dir/resolv.conf"

if command -v python3 >/dev/null; then
	mkdir -p "$dir/www"
	echo "hello from the outside ($OUTSIDE_ADDR)" >"$dir/www/index.html"
	nsenter --net="$outside" python3 -m http.server 80 --bind "$OUTSIDE_ADDR" --directory "$dir/www" >/dev/null 2>&1 &
	web_pid=$!
	for _ in $(seq 50); do
		if nsenter --net="$host" bash -c "exec 3<>/dev/tcp/$OUTSIDE_ADDR/80" 2>/dev/null; then break; fi
		sleep 0.1
	done
fi

nsenter --net="$host" "$bin/hostnetd" --socket "$sock" --state-dir "$dir/state" --run-dir "$dir/run" \
	--netns-link-dir "" --netns-etc-dir "$dir/etc-netns" --host-resolv-conf "$dir/resolv.conf" 2>"$log" &
daemon_pid=$!
for _ in $(seq 300); do
	if "$bin/hostnet" --socket "$sock" version >/dev/null 2>&1; then break; fi
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		echo "hostnetd did not start:" >&2
		cat "$log" >&2
		daemon_pid=
		exit 1
	fi
	sleep 0.1
done

export HOSTNET_SOCKET=$sock PATH=$bin:$PATH
if [ $# -gt 0 ]; then
	status=0
	nsenter --net="$host" "$@" || status=$?
	exit $status
fi

cat <<EOF
hostnet try-out: hostnetd runs in a throwaway network namespace; nothing of
this host changes, and everything goes when you exit this shell.

  this shell     runs in "the host" (uplink0 $HOST_ADDR/24)
  the outside    $OUTSIDE_ADDR$([ -n "$web_pid" ] && echo ", a web server on port 80"): nsenter --net=$outside CMD
  hostnetd's log $log

Try:
  hostnet network ls
  hostnet run --rm -- curl -s http://$OUTSIDE_ADDR/
  hostnet network create --subnet 10.77.0.0/24 blue
  hostnet run --network blue --name web -- sleep 600 &
  hostnet endpoint ls
  hostnet run -p 8080:80 --name site -- python3 -m http.server 80 &
  nsenter --net=$outside curl -sI http://$HOST_ADDR:8080/
  hostnet endpoint policy add site --acl 'allow in proto tcp lport 80 remote 192.0.2.0/24 priority 100'
  hostnet apply -f examples/stack.json
  exit
EOF
status=0
nsenter --net="$host" env PS1='(hostnet-try) \w# ' bash --norc -i || status=$?
exit $status
