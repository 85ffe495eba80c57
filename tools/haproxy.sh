#!/usr/bin/env bash
# HAProxy, the traffic front of the local and docker targets, installed under .state/haproxy.
#
#   tools/haproxy.sh install   use `haproxy` from PATH if it is 2.6 or newer; else download Debian's
#                              package and its two libraries that a Debian system lacks, and unpack
#                              them (no root needed, nothing installed system-wide)
#   tools/haproxy.sh path      print the binary the project runs
#
# Debian's haproxy is the 2.6 LTS branch (security fixes until 2027); the exact build is whatever
# bookworm's archive serves today: it replaces a superseded security build, so an exact version pin
# would break the install the day a fix ships. `haproxy -v` is checked and printed instead.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$PWD/.state/haproxy"  # the project's, whatever MLCICD_STATE_DIR says: settings.py looks here
BIN="$DIR/bin/haproxy"
MIN_MAJOR=2
MIN_MINOR=6

new_enough() {  # $1: a haproxy binary
    local v
    # `sed -n 1p`, not `head -1`: head exits early, and under pipefail the writer's SIGPIPE (141) fails the install.
    v=$("$1" -v 2>/dev/null | sed -n 's/^HA-\?Proxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | sed -n 1p)
    [[ -n "$v" ]] || return 1
    read -r major minor <<<"$v"
    (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) ))
}

case "${1:-}" in
install)
    if [[ -x "$BIN" ]] && new_enough "$BIN"; then exit 0; fi
    mkdir -p "$DIR/bin"
    system=$(command -v haproxy || true)
    if [[ -n "$system" ]] && new_enough "$system"; then
        ln -sf "$system" "$BIN"
        exit 0
    fi
    command -v apt-get >/dev/null || {
        echo "HAProxy 2.6+ is needed for the traffic front: install it (e.g. apt-get install haproxy, brew install haproxy) and put it on PATH"
        exit 1
    }
    rm -rf "$DIR/debs" "$DIR/root" && mkdir -p "$DIR/debs" "$DIR/root"
    pkgs=(haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1)
    (cd "$DIR/debs" && apt-get download "${pkgs[@]}" >/dev/null 2>&1) \
        || { apt-get update -qq >/dev/null 2>&1 || true; (cd "$DIR/debs" && apt-get download "${pkgs[@]}" >/dev/null); }
    for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
    mkdir -p "$DIR/lib"
    cp -a "$DIR"/root/usr/lib/x86_64-linux-gnu/*.so* "$DIR/lib/" 2>/dev/null \
        || cp -a "$DIR"/root/usr/lib/*/*.so* "$DIR/lib/"
    cp "$DIR/root/usr/sbin/haproxy" "$DIR/bin/haproxy.real"
    cat >"$BIN" <<'EOF'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/haproxy.real" "$@"
EOF
    chmod +x "$BIN"
    rm -rf "$DIR/debs" "$DIR/root"
    new_enough "$BIN" || { echo "the unpacked haproxy does not run:"; "$BIN" -v; exit 1; }
    "$BIN" -v | sed -n 1p
    ;;
path)
    echo "$BIN"
    ;;
*)
    echo "usage: $0 install|path" >&2
    exit 2
    ;;
esac
