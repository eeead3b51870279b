#!/usr/bin/env bash
# Installs (or upgrades) the Cerebrum orchestrator on a Raspberry Pi running
# Debian / Raspberry Pi OS. Run from a checkout, as root:
#
#   sudo deploy/cm4/install.sh
#
# Safe to run again: it changes only what differs, never overwrites
# /etc/cerebrum/*.env, and restarts the services only if they run and their
# code changed. Installs the orchestrator requirements only: never
# llama-cpp-python (scripts/bootstrap.sh role cm4). The services are enabled
# but not started: fill in /etc/cerebrum/orchestrator.env first
# (docs/deploy.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=deploy/common.sh
. "$here/../common.sh"

# The tunnel's key, pinned VPS host key and settings (cerebrum-tunnel.service).
TUNNEL_DIR=/etc/cerebrum-tunnel

require_root
# openssh-client: the tunnel; rsync: sync_app.
apt_install ca-certificates python3 python3-venv rsync openssh-client

ensure_system_user "$SERVICE_USER" "$STATE_DIR"
# A second account for the tunnel, so the orchestrator cannot read its key.
ensure_system_user cerebrum-tunnel "$TUNNEL_DIR"
ensure_dir "$STATE_DIR" root "$SERVICE_USER" 750
ensure_dir "$CONF_DIR" root "$SERVICE_USER" 750

sync_app "$src"
install_python cm4
link_cli

place_config "$here/orchestrator.env.example" "$CONF_DIR/orchestrator.env"
# The tunnel's key pair, made here so the private half never leaves the Pi.
# Its own folder, not under $CONF_DIR (group cerebrum): the orchestrator's
# account cannot read it, and the tunnel's cannot read the orchestrator's key.
ensure_dir "$TUNNEL_DIR" cerebrum-tunnel cerebrum-tunnel 700
if [ ! -f "$TUNNEL_DIR/id_ed25519" ]; then
    log "making the tunnel key $TUNNEL_DIR/id_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C "cerebrum-tunnel@$(hostname)" -f "$TUNNEL_DIR/id_ed25519"
    chown cerebrum-tunnel:cerebrum-tunnel "$TUNNEL_DIR/id_ed25519" "$TUNNEL_DIR/id_ed25519.pub"
else
    log "ok: tunnel key exists"
fi
# tunnel.env holds no secret; systemd reads it as root.
place_config "$here/tunnel.env.example" "$TUNNEL_DIR/tunnel.env" cerebrum-tunnel

install_unit "$here/cerebrum-orchestrator.service"
install_unit "$here/cerebrum-tunnel.service"
reload_units
enable_unit cerebrum-orchestrator.service
# The tunnel is one of two ways to the VPS (the other is Tailscale): enable it
# yourself if you use it (docs/deploy.md).
restart_if_active cerebrum-tunnel.service cerebrum-orchestrator.service

log "done. Next: edit $CONF_DIR/orchestrator.env, then see docs/deploy.md"
log "tunnel public key (for the VPS, if you use the SSH tunnel): $(cat "$TUNNEL_DIR/id_ed25519.pub")"
