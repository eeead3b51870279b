# shellcheck shell=bash
# Helpers shared by deploy/cm4/install.sh and deploy/vps/install.sh. Sourced,
# never run. Every helper is idempotent: it checks before it changes anything
# and says what it did, so a second install run prints only "ok" lines.
#
# Layout on both hosts:
#   /opt/cerebrum/app      a root-owned copy of this checkout (the services
#                          cannot read a checkout under /home or /root:
#                          their units set ProtectHome=yes)
#   /opt/cerebrum/venv     the virtual environment (scripts/bootstrap.sh)
#   /etc/cerebrum/*.env    settings and keys, root:cerebrum 0640
#   /var/lib/cerebrum      the service user's home (root-owned: read-only to it)

# Fixed paths: the units name them. Used by the scripts that source this file.
# shellcheck disable=SC2034
{
PREFIX=/opt/cerebrum
CONF_DIR=/etc/cerebrum
STATE_DIR=/var/lib/cerebrum
UNIT_DIR=/etc/systemd/system
SERVICE_USER=cerebrum
}
APP_DIR=$PREFIX/app
VENV=$PREFIX/venv

log() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
}

# Installs the Debian packages that are missing; touches apt only when needed,
# so a second run neither updates the package lists nor reinstalls anything.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "ok: packages $*"
        return
    fi
    log "installing packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# A system account with no login shell and no writable home: the services
# write nothing to disk (logs go to journald).
ensure_system_user() {
    local user=$1 home=$2
    if id -u "$user" >/dev/null 2>&1; then
        log "ok: user $user"
        return
    fi
    log "creating system user $user"
    useradd --system --user-group --home-dir "$home" --no-create-home \
        --shell /usr/sbin/nologin --comment "Cerebrum service" "$user"
}

# ensure_dir PATH OWNER GROUP MODE: create or correct a directory.
ensure_dir() {
    local path=$1 owner=$2 group=$3 mode=$4
    if [ -d "$path" ] && [ "$(stat -c '%U:%G %a' "$path")" = "$owner:$group $mode" ]; then
        return
    fi
    log "directory $path ($owner:$group $mode)"
    install -d -o "$owner" -g "$group" -m "$mode" "$path"
}

# install_file SRC DEST MODE: copy a root-owned file only when its content or
# mode differs. Returns 1 when nothing changed: call it from an `if`.
install_file() {
    local src=$1 dest=$2 mode=$3
    # stat prints 644 for 0644: compare the numbers, not the spelling.
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c '%a %U' "$dest")" = "$(printf '%o' "$((8#$mode))") root" ]; then
        return 1
    fi
    log "writing $dest"
    install -D -o root -g root -m "$mode" "$src" "$dest"
}

# place_config TEMPLATE DEST [GROUP]: the settings file is the operator's from the
# first install on; later runs never overwrite it (upgrades may add settings:
# compare with the template, see docs/deploy.md). Only the ownership and mode
# are corrected, because a world-readable key is a leak.
place_config() {
    local template=$1 dest=$2 group=${3:-$SERVICE_USER}
    if [ -e "$dest" ]; then
        log "ok: $dest exists, left as it is"
    else
        log "writing $dest from $(basename "$template")"
        install -o root -g "$group" -m 0640 "$template" "$dest"
    fi
    if [ "$(stat -c '%U:%G %a' "$dest")" != "root:$group 640" ]; then
        log "fixing ownership/mode of $dest"
        chown "root:$group" "$dest"
        chmod 0640 "$dest"
    fi
}

# Copies the checkout to $APP_DIR. rsync with --checksum so an unchanged tree
# is not rewritten; .env and .venv stay behind (a developer's key must not
# ride along). Excluded paths in the target (pip's egg-info) are kept, and
# directory times are not copied: pip's egg-info updates the top folder's
# time, which would otherwise be reset (a change) on every run.
sync_app() {
    local src=$1
    ensure_dir "$PREFIX" root root 755
    local changes
    changes=$(rsync -rlpt --omit-dir-times --checksum --chmod=go-w --delete --itemize-changes \
        --exclude=/.git/ --exclude=/.venv/ --exclude=.env --exclude=/.ci/ \
        --exclude=__pycache__/ --exclude='*.pyc' --exclude=/.pytest_cache/ \
        --exclude=/.hypothesis/ --exclude=/bench/.cache/ --exclude=/build/ \
        --exclude=/dist/ --exclude='*.egg-info/' --exclude='*.gguf' \
        "$src/" "$APP_DIR/")
    if [ -n "$changes" ]; then
        log "updated $APP_DIR ($(printf '%s\n' "$changes" | wc -l) changes)"
        APP_CHANGED=1
    else
        log "ok: $APP_DIR up to date"
    fi
}

# Installs the role's requirements with scripts/bootstrap.sh (the same script
# developers use) when they changed since the last install. The stamp hashes
# everything bootstrap.sh reads, like the Makefile's stamp does.
#   CEREBRUM_DEPLOY_SKIP_PIP=1   skip this step (tests/deploy idempotency runs
#                                only: llama-cpp-python takes minutes to build)
#   CEREBRUM_DEPLOY_FORCE_PIP=1  run bootstrap.sh even if nothing changed
install_python() {
    local role=$1 stamp=$VENV/.cerebrum-deploy-stamp digest
    if [ "${CEREBRUM_DEPLOY_SKIP_PIP:-0}" = 1 ]; then
        log "skipping the Python install (CEREBRUM_DEPLOY_SKIP_PIP=1)"
        return
    fi
    digest=$(cd "$APP_DIR" && { echo "$role"; cat scripts/bootstrap.sh requirements-*.txt setup.cfg pyproject.toml; } | sha256sum | cut -d' ' -f1)
    if [ "${CEREBRUM_DEPLOY_FORCE_PIP:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        log "ok: $VENV ($role) up to date"
        return
    fi
    log "installing the $role requirements into $VENV (llama-cpp-python compiles for minutes)"
    # PYTHONDONTWRITEBYTECODE: no __pycache__ in the root-owned app copy.
    PYTHONDONTWRITEBYTECODE=1 bash "$APP_DIR/scripts/bootstrap.sh" "$VENV" "$role"
    echo "$digest" >"$stamp"
    APP_CHANGED=1
}

# Installs a unit file; reloads systemd only when a unit changed and systemd
# is running (not in a chroot or a container without it).
install_unit() {
    local src=$1
    if install_file "$src" "$UNIT_DIR/$(basename "$src")" 0644; then
        UNITS_CHANGED=1
    else
        log "ok: unit $(basename "$src")"
    fi
}

systemd_running() { [ -d /run/systemd/system ]; }

reload_units() {
    if [ "${UNITS_CHANGED:-0}" = 1 ] && systemd_running; then
        log "systemctl daemon-reload"
        systemctl daemon-reload
    fi
}

# enable_unit NAME: enabled units start at boot. `systemctl enable` works
# offline too (it only makes symlinks), so a chroot install enables as well.
enable_unit() {
    local unit=$1
    if ! command -v systemctl >/dev/null; then
        log "warning: no systemctl here; enable $unit by hand once systemd runs"
        return
    fi
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        log "ok: $unit enabled"
        return
    fi
    log "enabling $unit"
    systemctl enable --quiet "$unit"
}

# restart_if_active UNIT...: an upgrade takes effect in running services;
# stopped ones stay stopped (the operator may not have configured them yet).
restart_if_active() {
    if { [ "${APP_CHANGED:-0}" = 1 ] || [ "${UNITS_CHANGED:-0}" = 1 ]; } && systemd_running; then
        log "restarting running services: $*"
        systemctl try-restart "$@"
    fi
}

# The `cerebrum` CLI on every user's PATH (status, keygen). A link, so
# upgrades of the venv need nothing here; an existing different file is left
# alone rather than replaced.
link_cli() {
    local link=/usr/local/bin/cerebrum target=$VENV/bin/cerebrum
    if [ "$(readlink "$link" 2>/dev/null)" = "$target" ]; then
        log "ok: $link"
    elif [ -e "$link" ] || [ -L "$link" ]; then
        log "warning: $link exists and is not ours; left as it is"
    else
        log "linking $link -> $target"
        ln -s "$target" "$link"
    fi
}
