#!/usr/bin/env bash
# Prints a new API key (43 URL-safe characters, 256 bits) on stdout and
# nothing else, so it can be captured: key=$(deploy/generate_api_key.sh).
#
# Uses `cerebrum keygen` when the CLI is installed (the venv's first, then
# PATH) so there is one definition of a good key; otherwise Python's secrets
# module, which reads the OS's CSPRNG, as `cerebrum keygen` does.
set -euo pipefail

for cli in /opt/cerebrum/venv/bin/cerebrum "$(command -v cerebrum || true)"; do
    # `cerebrum keygen` may be missing from an older CLI: fall through then.
    if [ -n "$cli" ] && [ -x "$cli" ] && key=$("$cli" keygen 2>/dev/null) && [ -n "$key" ]; then
        printf '%s\n' "$key"
        exit 0
    fi
done
exec python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
