#!/usr/bin/env bash
# Hosts on this machine for `ray up cluster-local.yaml`: N Linux network namespaces on
# one bridge, each with its own address on a private range used only inside them and
# an SSH server that takes a key this script makes. They share this machine's files
# and programs (the venv, the checkout), as cloud VMs share an image, but each has its
# own /tmp (where Ray keeps its sessions).
#
#   deploy/local-hosts.sh up N     make occ-host1..N (10.231.0.11..), sshd in each
#   deploy/local-hosts.sh down     every namespace, address, link and process it made, gone
#   deploy/local-hosts.sh status   what is up
#   deploy/local-hosts.sh ssh I -- CMD   run CMD on host I over SSH
#
# Installs openssh-server and rsync from Debian when missing. Touches no address or
# link outside the ones it made (bridge occ-br0, veths occ-v<I>, namespaces occ-host<I>).
# Needs root (network namespaces). State (keys, sshd configs, pid files) lives under
# $OCC_HOSTS_DIR (default: deploy/.local-hosts), removed by `down` except the keys.
set -euo pipefail

PREFIX=${OCC_HOSTS_PREFIX:-10.231.0}   # a /24 used only by these hosts
BRIDGE=occ-br0
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${OCC_HOSTS_DIR:-$HERE/.local-hosts}
KEY=$STATE/id_ed25519

address() { echo "$PREFIX.$((10 + $1))"; }
namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^occ-host[0-9]+$' || true; }

need() {
  local missing=""
  [ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
  command -v rsync >/dev/null 2>&1 || missing="$missing rsync"
  if [ -n "$missing" ]; then
    echo "installing from Debian:$missing" >&2
    apt-get update -qq
    # (no init system here: policy-rc.d keeps the package from starting a system sshd)
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  mkdir -p /run/sshd "$STATE"
  chmod 700 "$STATE"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N "" -C occ-local-hosts -f "$KEY"
  [ -f "$STATE/host_key" ] || ssh-keygen -q -t ed25519 -N "" -C occ-host -f "$STATE/host_key"
  cp "$KEY.pub" "$STATE/authorized_keys"
  chmod 600 "$STATE/authorized_keys"
}

up() {
  local n=$1
  need
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  for i in $(seq 1 "$n"); do
    local ns=occ-host$i addr
    addr=$(address "$i")
    if ! ip netns list | grep -qw "$ns"; then
      ip netns add "$ns"
      ip link add "occ-v$i" type veth peer name eth0 netns "$ns"
      ip link set "occ-v$i" master "$BRIDGE" up
      ip netns exec "$ns" ip addr add "$addr/24" dev eth0
      ip netns exec "$ns" ip link set eth0 up
      ip netns exec "$ns" ip link set lo up
      ip netns exec "$ns" ip route add default via "$PREFIX.1"
    fi
    cat > "$STATE/sshd_$i.conf" <<CONF
ListenAddress $addr
Port 22
HostKey $STATE/host_key
PidFile $STATE/sshd_$i.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv OCC_*
CONF
    if ! { [ -f "$STATE/sshd_$i.pid" ] && kill -0 "$(cat "$STATE/sshd_$i.pid")" 2>/dev/null; }; then
      # Its own /tmp (a mount namespace with a private tmpfs), so each host's Ray keeps
      # its session directory to itself, as on separate machines.
      ip netns exec "$ns" unshare --mount --propagation private sh -c \
        "mount -t tmpfs -o size=4g,mode=1777 occ-tmp /tmp && exec /usr/sbin/sshd -f '$STATE/sshd_$i.conf'"
    fi
  done
  for i in $(seq 1 "$n"); do  # answering before we say they are up
    for _ in $(seq 1 50); do
      ssh_to "$i" true 2>/dev/null && break
      sleep 0.1
    done
    ssh_to "$i" true
    echo "occ-host$i $(address "$i") up"
  done
}

ssh_to() {
  local i=$1; shift
  ssh -i "$KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5 "root@$(address "$i")" "$@"
}

down() {
  for ns in $(namespaces); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.2
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
    echo "$ns down"
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
                | grep -E '^occ-v[0-9]+$' || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  rm -f "$STATE"/sshd_*.conf "$STATE"/sshd_*.pid
}

status() {
  for ns in $(namespaces); do
    echo "$ns $(ip netns exec "$ns" ip -4 -o addr show eth0 | awk '{print $4}') processes: $(ip netns pids "$ns" | wc -l)"
  done
}

case "${1:-}" in
  up) up "${2:?how many hosts}" ;;
  down) down ;;
  status) status ;;
  ssh) i=${2:?which host}; shift 2; [ "${1:-}" = "--" ] && shift; ssh_to "$i" "$@" ;;
  *) echo "usage: $0 up N | down | status | ssh I -- CMD" >&2; exit 2 ;;
esac
