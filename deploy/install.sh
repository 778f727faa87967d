#!/usr/bin/env bash
# Installs infrabroker on a Debian host, or into a directory tree for
# packaging and tests. Idempotent: running it again updates binaries and
# units and changes nothing else.
#
#   deploy/install.sh [--root DIR] [--bin-dir DIR]    install
#   deploy/install.sh [--root DIR] --uninstall        remove binaries, units, users
#   deploy/install.sh [--root DIR] --uninstall --purge   … and configs, state, audit logs
#
#   --root DIR     install below DIR instead of / (users go into DIR/etc/passwd)
#   --bin-dir DIR  take signer, broker, broker-ctl and control-plane from DIR
#                  instead of building them with `cargo build --release`
#
# What it installs (paths below the root):
#   /usr/local/bin/{signer,broker,broker-ctl,control-plane}        0755
#   /usr/lib/sysusers.d/infrabroker.conf    system users, one per service, and
#                                           the group `infrabroker` that may read
#   /etc/infrabroker/                       0750 root:infrabroker (configs, keys)
#   /var/lib/infrabroker-<service>/         0700 state (recordings, store)
#   /var/log/infrabroker-<service>/         0700 audit logs
#   /etc/systemd/system/infrabroker-*.{service,timer}   the units from deploy/
#                                           (the KRL fetch timer is for SSH hosts)
#   /usr/local/share/doc/infrabroker/       example configs
# Uninstall keeps /etc/infrabroker, state and audit logs unless --purge: the
# audit logs are evidence.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"

root=""
bin_dir=""
uninstall=0
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 64 ;;
  esac
done
if [ -n "$root" ]; then
  mkdir -p "$root"
  root="$(cd "$root" && pwd)"
  [ "$root" = / ] && root=""
fi
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then
  echo "install.sh: --purge only goes with --uninstall" >&2
  exit 64
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run it as root (it creates system users and root-owned files)" >&2
  exit 77
fi

binaries=(signer broker broker-ctl control-plane)
# service name → the user it runs as
services=(signer control-plane broker)
units=(infrabroker-signer.service infrabroker-control-plane.service
  infrabroker-broker-http.service infrabroker-broker-rest.service
  infrabroker-krl-fetch.service infrabroker-krl-fetch.timer)
sysusers="$root/usr/lib/sysusers.d/infrabroker.conf"
docdir="$root/usr/local/share/doc/infrabroker"

say() { printf 'install.sh: %s\n' "$*"; }

# Numeric ids from the target tree's own user database, so --root never
# resolves names against the machine it runs on.
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/group"; }

write_sysusers() {
  install -d -m 0755 "$(dirname "$sysusers")"
  {
    echo "# infrabroker system users (systemd-sysusers format), written by deploy/install.sh"
    echo "g infrabroker -"
    for s in "${services[@]}"; do
      echo "u infrabroker-$s - \"infrabroker $s\" /var/lib/infrabroker-$s /usr/sbin/nologin"
      echo "m infrabroker-$s infrabroker"
    done
  } >"$sysusers.tmp"
  chmod 0644 "$sysusers.tmp"
  mv "$sysusers.tmp" "$sysusers"
}

create_users() {
  install -d -m 0755 "$root/etc"
  if command -v systemd-sysusers >/dev/null; then
    if [ -n "$root" ]; then
      systemd-sysusers --root="$root" "$sysusers" >/dev/null
    else
      systemd-sysusers "$sysusers" >/dev/null
    fi
    return
  fi
  # Without systemd-sysusers: the same users with shadow's tools.
  local prefix=()
  [ -n "$root" ] && prefix=(--prefix "$root")
  getent_in() { awk -F: -v n="$2" '$1 == n { found = 1 } END { exit !found }' "$root/etc/$1" 2>/dev/null; }
  getent_in group infrabroker || groupadd "${prefix[@]}" --system infrabroker
  for s in "${services[@]}"; do
    getent_in passwd "infrabroker-$s" ||
      useradd "${prefix[@]}" --system --user-group --home-dir "/var/lib/infrabroker-$s" \
        --no-create-home --shell /usr/sbin/nologin --groups infrabroker "infrabroker-$s"
  done
}

build_or_find_binaries() {
  if [ -z "$bin_dir" ]; then
    say "building release binaries (cargo build --release)"
    (cd "$src" && cargo build --release --quiet --bins -p infrabroker-signer -p infrabroker-broker \
      -p broker-ctl -p infrabroker-control-plane)
    bin_dir="$src/target/release"
  fi
  for b in "${binaries[@]}"; do
    [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing or not executable" >&2; exit 66; }
  done
}

install_all() {
  build_or_find_binaries
  install -d -m 0755 "$root/usr/local/bin"
  for b in "${binaries[@]}"; do
    install -m 0755 "$bin_dir/$b" "$root/usr/local/bin/$b.new"
    mv -f "$root/usr/local/bin/$b.new" "$root/usr/local/bin/$b"
  done

  write_sysusers
  create_users
  local group
  group=$(gid_of infrabroker)
  install -d -m 0750 -o 0 -g "$group" "$root/etc/infrabroker"
  for s in "${services[@]}"; do
    local u g
    u=$(uid_of "infrabroker-$s")
    g=$(gid_of "infrabroker-$s")
    install -d -m 0700 -o "$u" -g "$g" "$root/var/lib/infrabroker-$s" "$root/var/log/infrabroker-$s"
  done

  install -d -m 0755 "$root/etc/systemd/system"
  for unit in "${units[@]}"; do
    install -m 0644 "$src/deploy/$unit" "$root/etc/systemd/system/$unit"
  done

  install -d -m 0755 "$docdir"
  install -m 0644 "$src/signer.example.json" "$docdir/signer.example.json"

  if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
  say "installed into ${root:-/}"
  cat <<EOT
Next: put signer.json (from $docdir/signer.example.json) and its keys in /etc/infrabroker
(keys 0600, owned by the service user), check it with
  signer check --config /etc/infrabroker/signer.json
and start it with
  systemctl enable --now infrabroker-signer
The broker units read /etc/infrabroker/broker-http.json (mcp-http) and broker-rest.json (serve),
the control plane /etc/infrabroker/control-plane.json.
On SSH hosts: write /etc/infrabroker/krl-fetch.env (KRL_ARGS=--url http://signer:9444), set
  RevokedKeys /var/lib/infrabroker-krl/infrabroker.krl
in sshd_config, run the fetch once, then systemctl enable --now infrabroker-krl-fetch.timer
EOT
}

uninstall_all() {
  if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    for unit in "${units[@]}"; do systemctl disable --now "$unit" 2>/dev/null || true; done
  fi
  for unit in "${units[@]}"; do rm -f "$root/etc/systemd/system/$unit"; done
  for b in "${binaries[@]}"; do rm -f "$root/usr/local/bin/$b"; done
  rm -rf "$docdir"
  local prefix=()
  [ -n "$root" ] && prefix=(--prefix "$root")
  for s in "${services[@]}"; do
    if awk -F: -v n="infrabroker-$s" '$1 == n { found = 1 } END { exit !found }' "$root/etc/passwd" 2>/dev/null; then
      userdel "${prefix[@]}" "infrabroker-$s"
    fi
  done
  if awk -F: '$1 == "infrabroker" { found = 1 } END { exit !found }' "$root/etc/group" 2>/dev/null; then
    groupdel "${prefix[@]}" infrabroker
  fi
  rm -f "$sysusers"
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/infrabroker"
    for s in "${services[@]}"; do rm -rf "$root/var/lib/infrabroker-$s" "$root/var/log/infrabroker-$s"; done
    say "removed from ${root:-/}, including configs, state and audit logs"
  else
    say "removed from ${root:-/}; kept /etc/infrabroker, /var/lib/infrabroker-* and /var/log/infrabroker-* (use --purge to delete them)"
  fi
  if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
}

if [ "$uninstall" = 1 ]; then uninstall_all; else install_all; fi
