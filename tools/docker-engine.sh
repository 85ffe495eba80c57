#!/usr/bin/env bash
# A private Docker engine for the tests and the docker deploy target on a machine without one.
#
#   tools/docker-engine.sh install   apt-get docker.io, debootstrap and docker-registry when missing
#   tools/docker-engine.sh start     start dockerd on unix://$MLCICD_DOCKER_DIR/docker.sock (idempotent)
#   tools/docker-engine.sh stop      stop it and unmount what it mounted
#   tools/docker-engine.sh base      make the local base image mlcicd-base:bookworm (Debian 12, Python 3.11)
#   tools/docker-engine.sh env       print the DOCKER_HOST line to eval
#
# Networking is off (no bridge, no iptables, no ip_forward change on the host): containers use the
# host network. Its state lives under .state/docker (git-ignored). Where a Docker engine already
# runs, none of this is needed: point DOCKER_HOST at it instead.
#
# With MLCICD_DOCKER_NETNS=NAME (and its own MLCICD_DOCKER_DIR), start runs the engine in a network
# namespace of its own, with Docker's bridge networking (what Compose needs: networks, service-name
# DNS, published ports), and stop deletes the namespace. The host's interfaces, iptables and
# ip_forward stay untouched; nothing outside the namespace is reachable from it (no registry, no PyPI).
# Reach it with `nsenter --net=/var/run/netns/NAME COMMAND` (the Compose test does).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${MLCICD_DOCKER_DIR:-$PWD/.state/docker}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
BASE_IMAGE="${MLCICD_BASE_IMAGE_LOCAL:-mlcicd-base:bookworm}"
OWN="unix://$SOCK"
NETNS="${MLCICD_DOCKER_NETNS:-}"
export DOCKER_HOST="${DOCKER_HOST:-$OWN}"  # base/env use an engine already configured, if any

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
install)
    # docker-registry: Distribution's registry, for the tests' real pushes (no registry image can be pulled)
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-registry >/dev/null; then
        [[ $(id -u) == 0 ]] || { echo "installing docker.io and debootstrap needs root (apt-get)"; exit 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends docker.io debootstrap docker-registry >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y --no-install-recommends docker.io debootstrap docker-registry >/dev/null; }
    fi
    command -v docker >/dev/null || { echo "no docker client on PATH after installing docker.io"; exit 1; }
    ;;
start)
    export DOCKER_HOST="$OWN"
    if running; then exit 0; fi
    mkdir -p "$DIR/data" "$DIR/exec"
    if [[ -n "$NETNS" ]]; then
        # nsenter, not `ip netns exec`: that remounts /sys, and dockerd then finds no devices cgroup.
        [[ -e "/var/run/netns/$NETNS" ]] || ip netns add "$NETNS"
        ip netns exec "$NETNS" ip link set lo up
        nsenter --net="/var/run/netns/$NETNS" dockerd --data-root "$DIR/data" --exec-root "$DIR/exec" \
            --pidfile "$PIDFILE" -H "$OWN" --storage-driver overlay2 --ip-forward=false \
            >"$DIR/dockerd.log" 2>&1 &
    else
        dockerd --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" -H "$OWN" \
            --storage-driver overlay2 --iptables=false --ip6tables=false --ip-masq=false \
            --ip-forward=false --bridge=none --userland-proxy=false >"$DIR/dockerd.log" 2>&1 &
    fi
    for _ in $(seq 1 100); do
        if docker info >/dev/null 2>&1; then exit 0; fi
        sleep 0.2
    done
    echo "dockerd did not answer on $SOCK within 20 s; its log:"; tail -20 "$DIR/dockerd.log"; exit 1
    ;;
stop)
    if running; then
        pid=$(cat "$PIDFILE")
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    umount "$DIR/exec/netns/default" 2>/dev/null || true
    if [[ -n "$NETNS" && -e "/var/run/netns/$NETNS" ]]; then ip netns del "$NETNS"; fi
    ;;
base)
    # A stand-in for python:3.11-slim, made here because no registry can be reached: a minimal
    # Debian 12 root with Python 3.11 and venv, and this machine's CA bundle so pip works behind
    # its TLS proxy.
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then exit 0; fi
    root="$DIR/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
        >"$DIR/debootstrap.log" 2>&1 || { tail -20 "$DIR/debootstrap.log"; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    ;;
env)
    echo "export DOCKER_HOST=$DOCKER_HOST"
    ;;
*)
    sed -n '2,12p' "$0"; exit 2
    ;;
esac
