#!/usr/bin/env bash
# Installs infrabroker-shim, the sealed-exec enforcer, on a host.
#
#   deploy/install-shim.sh --host NAME --keys FILE [--principals P1,P2] [--bin PATH] [--root DIR]
#   deploy/install-shim.sh --uninstall [--root DIR]
#
#   --host NAME        this host's name in signer.json (envelopes for other hosts are refused)
#   --keys FILE        the signer's envelope public key(s), one `ssh-ed25519 …` line each
#                      (`broker-ctl pki envelope-pub` prints them; two lines during a rotation)
#   --principals LIST  accept only envelopes for these certificate principals (default: any)
#   --bin PATH         install this shim binary instead of building a static one
#   --root DIR         install below DIR (packaging, tests)
#
# Installs /usr/local/bin/infrabroker-shim (0755), /etc/infrabroker-shim/{shim.conf,keys.pub}
# (0644 root) and /var/lib/infrabroker-shim (1733 root: every account keeps its own nonce
# file there, no account can list or remove another's). Then mark the host
# `"sealed_exec": true` in signer.json: its session certificates carry
# force-command=/usr/local/bin/infrabroker-shim.
#
# An sshd `ForceCommand` for the account (in sshd_config or a Match block) overrides the
# certificate's force-command and would bypass the shim: this script refuses to go on when
# `sshd -T` shows one.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"

root="" host="" keys="" principals="" bin="" uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?}"; shift 2 ;;
    --host) host="${2:?}"; shift 2 ;;
    --keys) keys="${2:?}"; shift 2 ;;
    --principals) principals="${2:?}"; shift 2 ;;
    --bin) bin="${2:?}"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install-shim.sh: unknown argument $1 (try --help)" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install-shim.sh: run it as root" >&2; exit 77; }

if [ "$uninstall" = 1 ]; then
  rm -f "$root/usr/local/bin/infrabroker-shim"
  rm -rf "$root/etc/infrabroker-shim" "$root/var/lib/infrabroker-shim"
  echo "install-shim.sh: removed; remove \"sealed_exec\" from the host in signer.json first, or its sessions stop working"
  exit 0
fi

[ -n "$host" ] || { echo "install-shim.sh: --host is required" >&2; exit 64; }
[ -n "$keys" ] || { echo "install-shim.sh: --keys is required" >&2; exit 64; }
case "$host" in *[!A-Za-z0-9._-]*) echo "install-shim.sh: invalid --host $host" >&2; exit 64 ;; esac
grep -q '^ssh-ed25519 ' "$keys" || { echo "install-shim.sh: $keys has no ssh-ed25519 line" >&2; exit 65; }

if [ -z "$root" ] && command -v sshd >/dev/null && sshd -T 2>/dev/null | grep -qi '^forcecommand '; then
  echo "install-shim.sh: sshd has a ForceCommand, which would override the shim (see sshd -T); remove it first" >&2
  exit 78
fi

if [ -z "$bin" ]; then
  echo "install-shim.sh: building a static infrabroker-shim"
  target="$(rustc -vV | sed -n 's/^host: //p')"
  (cd "$src" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
    -p infrabroker-shim --target "$target")
  bin="$src/target/$target/release/infrabroker-shim"
fi
[ -x "$bin" ] || { echo "install-shim.sh: $bin is not an executable" >&2; exit 66; }

install -d -m 0755 "$root/usr/local/bin" "$root/etc/infrabroker-shim"
install -s -m 0755 "$bin" "$root/usr/local/bin/infrabroker-shim.new"
mv -f "$root/usr/local/bin/infrabroker-shim.new" "$root/usr/local/bin/infrabroker-shim"
install -m 0644 "$keys" "$root/etc/infrabroker-shim/keys.pub"
{
  echo "# infrabroker-shim: written by deploy/install-shim.sh"
  echo "host = $host"
  [ -n "$principals" ] && echo "principals = $principals"
  echo "keys = /etc/infrabroker-shim/keys.pub"
  echo "state_dir = /var/lib/infrabroker-shim"
} >"$root/etc/infrabroker-shim/shim.conf.new"
chmod 0644 "$root/etc/infrabroker-shim/shim.conf.new"
mv -f "$root/etc/infrabroker-shim/shim.conf.new" "$root/etc/infrabroker-shim/shim.conf"
install -d -m 1733 "$root/var/lib/infrabroker-shim"
echo "install-shim.sh: installed for host $host; now set \"sealed_exec\": true on it in signer.json and reload the signer"
