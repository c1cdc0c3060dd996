#!/usr/bin/env bash
# Hosts on this machine for `ray up cluster-local.yaml`: N Linux network namespaces on
# one bridge, each with its own address on a private range used only inside them and
# an SSH server that takes a key this script makes. They share this machine's files
# and programs (the checkout's .venv is their image), as cloud VMs share an image, but
# each has its own processes, /tmp and /dev/shm (where Ray keeps its session, its
# object store, and what `ray stop` stops).
#
#   deploy/local-hosts.sh up N     make occ-host1..N (10.231.0.11..), sshd in each
#   deploy/local-hosts.sh down     every namespace, address, link and process it made, gone
#   deploy/local-hosts.sh status   what is up
#   deploy/local-hosts.sh ssh I -- CMD   run CMD on host I over SSH
#
# Installs openssh-server and rsync from Debian when missing. Touches no address or
# link outside the ones it made (bridge occ-br0, veths occ-v<I>, namespaces occ-host<I>).
# Needs root (namespaces). State (keys, sshd configs, the env file) lives under
# $OCC_HOSTS_DIR (default: deploy/.local-hosts), removed by `down` except the keys.
# The env file cluster-local.yaml copies to the hosts is written there at `up`.
set -euo pipefail

PREFIX=${OCC_HOSTS_PREFIX:-10.231.0}   # a /24 used only by these hosts
BRIDGE=occ-br0
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${OCC_HOSTS_DIR:-$HERE/.local-hosts}
KEY=$STATE/id_ed25519
IMAGE=${OCC_HOSTS_IMAGE:-$(cd "$HERE/.." && pwd)/.venv}  # the hosts' Python environment

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
PidFile none
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv OCC_*
CONF
    if [ -z "$(ip netns pids "$ns")" ]; then
      # Its own processes, /tmp and /dev/shm (PID and mount namespaces, private tmpfs):
      # each host's Ray keeps its session, its object store and its `ray stop` to
      # itself, as on separate machines. sshd is the host's first process: stopping it
      # stops the host. The image (this checkout's Python environment) is at
      # /tmp/occ-image on every host, on the PATH of its login shells (its own
      # /etc/profile.d), as Ray is on a cloud image's: `ray up` and `ray down` run
      # plain `ray start` and `ray stop` there.
      setsid ip netns exec "$ns" unshare --mount --pid --fork --mount-proc \
        --propagation private sh -c "mount -t tmpfs -o size=4g,mode=1777 occ-tmp /tmp &&
          mount -t tmpfs -o size=2g,mode=1777 occ-shm /dev/shm &&
          ln -s '$IMAGE' /tmp/occ-image &&
          cp -a /etc/profile.d /tmp/.occ-profile.d &&
          mount -t tmpfs -o size=1m,mode=755 occ-profile /etc/profile.d &&
          cp -a /tmp/.occ-profile.d/. /etc/profile.d/ &&
          echo 'PATH=/tmp/occ-image/bin:\$PATH' > /etc/profile.d/occ-image.sh &&
          exec /usr/sbin/sshd -D -f '$STATE/sshd_$i.conf'" </dev/null >/dev/null 2>&1 &
    fi
  done
  env_file "$n"
  for i in $(seq 1 "$n"); do  # answering before we say they are up
    for _ in $(seq 1 50); do
      ssh_to "$i" true 2>/dev/null && break
      sleep 0.1
    done
    ssh_to "$i" true
    echo "occ-host$i $(address "$i") up"
  done
}

# What cluster-local.yaml's hosts read before `ray start` (as ~/.operator-comms.env on
# AWS): a fresh admin token and Ray auth token, kept until `down`, and the embedded services on the head's
# address (host 1), where the workers reach them.
env_file() {
  local file=$STATE/operator-comms.env
  [ -f "$file" ] && return 0
  umask 077
  cat > "$file" <<ENV
COMMS_ADMIN_TOKEN='$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')'
COMMS_LOCAL_SERVICES_HOST='$(address 1)'
COMMS_PUBLIC_URL='http://$(address 1):8000'
COMMS_DATA_DIR='/tmp/operator-comms-data'
COMMS_SEND_TASK_RESOURCES='{"comms_sender": 1}'
COMMS_SEND_TASK_CPUS='0.0625'
COMMS_ACTOR_RESOURCES='{"comms_head": 0.01}'
RAY_SERVE_CONTROL_LOOP_INTERVAL_S='0.5'
RAY_AUTH_MODE='token'
RAY_AUTH_TOKEN='$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')'
ENV
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
  rm -f "$STATE"/sshd_*.conf "$STATE"/operator-comms.env
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
