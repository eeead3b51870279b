#!/usr/bin/env bash
# Runs each host's install script twice in a throw-away Debian root and fails
# if the second run changes anything, or if the first leaves a broken install.
#
#   sudo scripts/deploy_idempotency.sh [cm4] [vps]     (default: both)
#
# Needs root, debootstrap and network access to the Debian and Python package
# registries (the host's apt mirror, proxy and CA settings are reused). Slow
# (minutes; the first vps run compiles llama-cpp-python), so it is not part of
# `make test`: run it after changing deploy/ or scripts/bootstrap.sh.
#
# Settings (environment):
#   CEREBRUM_IDEMPOTENCY_SUITE   Debian suite to build (default bookworm)
#   CEREBRUM_IDEMPOTENCY_MIRROR  apt mirror URL (default: the host's first)
#   CEREBRUM_IDEMPOTENCY_CACHE   where the base root is kept between runs
#                                (default /var/cache/cerebrum-deploy-test)
#   CEREBRUM_IDEMPOTENCY_PIP_CACHE=0  do not share the host's pip cache (by
#                                default it is bind-mounted, so a wheel built
#                                once, llama-cpp-python's, is reused)
#   CEREBRUM_IDEMPOTENCY_KEEP=1  keep the roots for inspection
#   CEREBRUM_DEPLOY_SKIP_PIP=1   passed to the install scripts: skip the
#                                Python install (fast check of everything else)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=${CEREBRUM_IDEMPOTENCY_SUITE:-bookworm}
cache=${CEREBRUM_IDEMPOTENCY_CACHE:-/var/cache/cerebrum-deploy-test}
roles=("$@")
[ ${#roles[@]} -gt 0 ] || roles=(cm4 vps)

say() { echo "idempotency: $*"; }
die() { echo "idempotency: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"

# The host's own mirror, from either apt sources format, so the repository
# names no registry host and the run works wherever the host's apt works.
host_mirror() {
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n1 || true)
    printf '%s' "$uri"
}

# A minimal Debian with systemd installed (not booted), as on a fresh server
# image; cached, since only the install scripts are under test.
base=$cache/$suite-base
if [ ! -d "$base" ]; then
    mirror=${CEREBRUM_IDEMPOTENCY_MIRROR:-$(host_mirror)}
    [ -n "$mirror" ] || die "no apt mirror found; set CEREBRUM_IDEMPOTENCY_MIRROR"
    say "building the base root $base (debootstrap $suite)"
    mkdir -p "$cache"
    rm -rf "$base.tmp"
    debootstrap --variant=minbase --include=systemd,ca-certificates "$suite" "$base.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $cache/debootstrap.log"
    mv "$base.tmp" "$base"
fi

mounted=()
roots=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[i]}" 2>/dev/null || true
    done
    if [ "${CEREBRUM_IDEMPOTENCY_KEEP:-0}" != 1 ]; then
        for i in "${roots[@]}"; do rm -rf --one-file-system "$i"; done
    fi
}
trap cleanup EXIT

# Variables the chroot inherits: proxies, CA bundles and pip settings, so the
# install scripts reach the registries exactly as the host does.
passthrough() {
    env | grep -E '^((https?|no|all)_proxy|(HTTPS?|NO|ALL)_PROXY|PIP_[A-Z_]+|SSL_CERT_FILE|REQUESTS_CA_BUNDLE|CEREBRUM_DEPLOY_[A-Z_]+)=' || true
}

# A manifest of everything the install could touch: path, type, mode, owner,
# size, mtime, link target and content hash. Equal manifests mean the second
# run wrote nothing, not even identical bytes. Volatile trees are left out.
manifest() {
    local root=$1
    (
        cd "$root"
        find . -xdev \
            \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
               -o -path ./var/tmp -o -path ./var/log -o -path ./var/cache \
               -o -path ./var/lib/apt/lists -o -path ./root/.cache -o -path ./root/cerebrum \) -prune \
            -o -printf '%p %y %m %U:%G %s %T@ %l\n' | sort
        find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
               -o -path ./var/tmp -o -path ./var/log -o -path ./var/cache \
               -o -path ./var/lib/apt/lists -o -path ./root/.cache -o -path ./root/cerebrum \) -prune \
            -o -type f -print0 | sort -z | xargs -0 sha256sum
    )
}

run_install() {
    local root=$1 role=$2 log=$3
    local -a vars
    mapfile -t vars < <(passthrough)
    chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "${vars[@]}" \
        bash /root/cerebrum/deploy/"$role"/install.sh >"$log" 2>&1
}

check_role() {
    local role=$1 root
    root=$(mktemp -d "/var/tmp/cerebrum-idempotency-$role.XXXXXX")
    roots+=("$root")
    say "[$role] copying the base root to $root"
    cp -a "$base/." "$root/"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # Hosts behind a TLS-inspecting proxy trust extra CAs: the chroot must too.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null 2>&1
    fi
    for fs in proc sys dev; do
        mount --rbind "/$fs" "$root/$fs"
        mount --make-rslave "$root/$fs"
        mounted+=("$root/$fs")
    done
    if [ "${CEREBRUM_IDEMPOTENCY_PIP_CACHE:-1}" = 1 ] && [ -d /root/.cache/pip ]; then
        mkdir -p "$root/root/.cache/pip"
        mount --bind /root/.cache/pip "$root/root/.cache/pip"
        mounted+=("$root/root/.cache/pip")
    fi
    # The checkout as an operator would have it: tracked and untracked files,
    # not what git ignores (.venv, .env).
    mkdir -p "$root/root/cerebrum"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
        | tar --null -T - -cf -) | tar -C "$root/root/cerebrum" -xf -

    local t0 t1
    say "[$role] first run"
    t0=$(date +%s)
    run_install "$root" "$role" "$root.run1.log" || { tail -n 40 "$root.run1.log"; die "[$role] first run failed (log: $root.run1.log)"; }
    t1=$(date +%s)
    say "[$role] first run ok in $((t1 - t0)) s"
    manifest "$root" >"$root.before"

    say "[$role] second run"
    run_install "$root" "$role" "$root.run2.log" || { tail -n 40 "$root.run2.log"; die "[$role] second run failed (log: $root.run2.log)"; }
    say "[$role] second run ok in $(($(date +%s) - t1)) s; its output:"
    sed 's/^/    /' "$root.run2.log"
    manifest "$root" >"$root.after"
    if ! diff -u "$root.before" "$root.after" >"$root.diff"; then
        head -n 60 "$root.diff"
        die "[$role] the second run changed files (full diff: $root.diff)"
    fi
    # Anything other than "ok"/informational lines means it acted again.
    if grep -vE '^install: (ok: |skipping the Python install|done\.|tunnel public key|.*Check it:)' "$root.run2.log" >"$root.acted"; then
        cat "$root.acted"
        die "[$role] the second run did something (lines above)"
    fi

    check_result "$root" "$role"
    say "[$role] PASS: idempotent, $(wc -l <"$root.after") manifest lines unchanged"
    # Logs and manifests stay behind only when something failed (or KEEP=1).
    if [ "${CEREBRUM_IDEMPOTENCY_KEEP:-0}" != 1 ]; then
        rm -f "$root".{before,after,diff,acted,run1.log,run2.log}
    fi
}

# The first run must also have produced a usable install, or "nothing
# changed" would be trivially true.
check_result() {
    local root=$1 role=$2 env unit
    case "$role" in
        cm4) env=orchestrator.env unit=cerebrum-orchestrator.service ;;
        vps) env=backend.env unit=cerebrum-backend.service ;;
    esac
    chroot "$root" id cerebrum >/dev/null || die "[$role] no cerebrum user"
    # stat inside the root: user and group names are the root's, not the host's.
    [ "$(chroot "$root" stat -c '%U:%G %a' "/etc/cerebrum/$env")" = "root:cerebrum 640" ] \
        || die "[$role] /etc/cerebrum/$env is $(chroot "$root" stat -c '%U:%G %a' "/etc/cerebrum/$env")"
    [ -L "$root/etc/systemd/system/multi-user.target.wants/$unit" ] || die "[$role] $unit not enabled"
    if [ "$role" = vps ]; then
        grep -qE '^CEREBRUM_API_KEY=.{32,}$' "$root/etc/cerebrum/backend.env" || die "[vps] no API key written"
    else
        [ -f "$root/etc/cerebrum-tunnel/id_ed25519" ] || die "[cm4] no tunnel key"
        [ "$(chroot "$root" stat -c '%U %a' /etc/cerebrum-tunnel/id_ed25519)" = "cerebrum-tunnel 600" ] || die "[cm4] tunnel key owner/mode"
    fi
    if [ "${CEREBRUM_DEPLOY_SKIP_PIP:-0}" != 1 ]; then
        # As the service user, as systemd would run it: the code and the
        # settings must be readable by it.
        chroot "$root" runuser -u cerebrum -- /opt/cerebrum/venv/bin/python -c 'import cerebrum, aiohttp' \
            || die "[$role] the venv cannot import cerebrum as user cerebrum"
        chroot "$root" runuser -u cerebrum -- cat "/etc/cerebrum/$env" >/dev/null \
            || die "[$role] user cerebrum cannot read /etc/cerebrum/$env"
        if [ "$role" = cm4 ]; then
            if chroot "$root" /opt/cerebrum/venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
                die "[cm4] llama-cpp-python is installed on the orchestrator"
            fi
        else
            chroot "$root" /opt/cerebrum/venv/bin/python -c 'import llama_cpp' || die "[vps] llama_cpp missing"
        fi
        # The installed units against the installed files (ExecStart exists).
        if command -v systemd-analyze >/dev/null; then
            local out
            out=$(systemd-analyze verify --root="$root" "$unit" 2>&1) || die "[$role] systemd-analyze verify: $out"
            [ -z "$out" ] || die "[$role] systemd-analyze verify: $out"
        fi
    fi
}

for role in "${roles[@]}"; do
    case "$role" in
        cm4 | vps) check_role "$role" ;;
        *) die "unknown role '$role' (cm4 or vps)" ;;
    esac
done
say "all passed: ${roles[*]}"
