#!/usr/bin/env bash
# Installs (or upgrades) the Cerebrum inference backend on a Debian/Ubuntu
# VPS. Run from a checkout, as root:
#
#   sudo deploy/vps/install.sh
#
# Safe to run again: it changes only what differs, never overwrites
# /etc/cerebrum/backend.env, and restarts the backend only if it runs and its
# code changed. The first run builds llama-cpp-python (about 5 minutes on 2
# cores), writes a fresh API key into backend.env and starts the backend on
# 127.0.0.1:9000 with the small embedded model; add real models afterwards
# (docs/deploy.md, /var/lib/cerebrum/models/README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=deploy/common.sh
. "$here/../common.sh"

MODELS_DIR=$STATE_DIR/models
# The account the Pi's SSH tunnel logs in to: no shell, and its
# authorized_keys line allows nothing but forwarding to 127.0.0.1:9000.
TUNNEL_USER=cerebrum-tunnel
TUNNEL_HOME=/var/lib/cerebrum-tunnel

require_root
# cmake, g++, make: llama-cpp-python compiles llama.cpp (bootstrap.sh would
# install them too; listing them here makes the first run's apt step one).
apt_install ca-certificates python3 python3-venv rsync cmake g++ make

ensure_system_user "$SERVICE_USER" "$STATE_DIR"
ensure_dir "$STATE_DIR" root "$SERVICE_USER" 750
ensure_dir "$CONF_DIR" root "$SERVICE_USER" 750
# Models are root's to add and the service's to read only.
ensure_dir "$MODELS_DIR" root "$SERVICE_USER" 750
for f in README.md models.toml.example; do
    install_file "$here/models/$f" "$MODELS_DIR/$f" 0644 || true
done

sync_app "$src"
install_python vps
link_cli

new_config=0
[ -e "$CONF_DIR/backend.env" ] || new_config=1
place_config "$here/backend.env.example" "$CONF_DIR/backend.env"
if [ "$new_config" = 1 ]; then
    # A fresh install gets a key at once, so the backend never runs without
    # one. Written straight into the file, never printed.
    # Keys are URL-safe (A-Z a-z 0-9 - _), so they are safe inside sed's s|||.
    key=$("$here/../generate_api_key.sh")
    sed -i "s|^CEREBRUM_API_KEY=\$|CEREBRUM_API_KEY=$key|" "$CONF_DIR/backend.env"
    log "wrote a new API key into $CONF_DIR/backend.env (sudo grep API_KEY $CONF_DIR/backend.env)"
fi

ensure_system_user "$TUNNEL_USER" "$TUNNEL_HOME"
ensure_dir "$TUNNEL_HOME" root "$TUNNEL_USER" 750
ensure_dir "$TUNNEL_HOME/.ssh" root "$TUNNEL_USER" 750
if [ ! -e "$TUNNEL_HOME/.ssh/authorized_keys" ]; then
    log "writing an empty $TUNNEL_HOME/.ssh/authorized_keys (add the Pi's key: docs/deploy.md)"
    install -o root -g "$TUNNEL_USER" -m 0640 /dev/null "$TUNNEL_HOME/.ssh/authorized_keys"
fi

install_unit "$here/cerebrum-backend.service"
reload_units
enable_unit cerebrum-backend.service
restart_if_active cerebrum-backend.service
if systemd_running && ! systemctl is-active --quiet cerebrum-backend.service; then
    log "starting cerebrum-backend"
    systemctl start cerebrum-backend.service
fi
log "done. Check it: curl -s http://127.0.0.1:9000/health"
