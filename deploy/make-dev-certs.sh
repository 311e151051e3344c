#!/usr/bin/env bash
# Development certificates for the compose "tls" profile: a throw-away CA, one
# certificate per service (server and client use, named after its compose
# service), an operator client certificate for the CLI, and the credentials
# file that maps their common names to identities and roles.
#
#   deploy/make-dev-certs.sh [DIR]     (default: deploy/certs; refuses to overwrite)
#
# Not for production: the keys are world-readable so the image's unprivileged
# user can read them through the bind mount, and the CA key sits beside them.
set -euo pipefail

SERVICES=(collector fingerprint similarity predictor orchestrator)
DIR=${1:-"$(dirname "$0")/certs"}
DAYS=${DAYS:-365}

if [ -e "$DIR/ca.crt" ]; then
    echo "$DIR/ca.crt exists; remove $DIR to start again" >&2
    exit 1
fi
mkdir -p "$DIR"
cd "$DIR"

openssl req -x509 -new -nodes -days "$DAYS" -subj "/CN=cfgclone development CA" \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout ca.key -out ca.crt 2>/dev/null

# issue NAME EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
issue() {
    local name=$1 usage=$2 alt_names=${3:-}
    local extensions="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
    if [ -n "$alt_names" ]; then
        extensions="$extensions
subjectAltName=$alt_names"
    fi
    openssl req -new -nodes -subj "/CN=$name" \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days "$DAYS" -extfile <(printf '%s\n' "$extensions") -out "$name.crt" 2>/dev/null
    rm "$name.csr"
}

{
    echo "# credential        identity        role"
    for service in "${SERVICES[@]}"; do
        # The compose name for the peers and health checks; localhost for the host's CLI.
        issue "$service" serverAuth,clientAuth "DNS:$service,DNS:localhost,IP:127.0.0.1"
        printf 'cn:%-16s %-15s service\n' "$service" "$service"
    done
    issue operator clientAuth
    printf 'cn:%-16s %-15s operator\n' operator operator
} > credentials

rm -f ca.srl
chmod 0644 ./*.key
chmod 0600 ca.key   # not needed by any container
echo "certificates in $DIR; CLI from the host:"
echo "  CFGCLONE_TLS_CA=$PWD/ca.crt CFGCLONE_TLS_CLIENT_CERT=$PWD/operator.crt \\"
echo "  CFGCLONE_TLS_CLIENT_KEY=$PWD/operator.key CFGCLONE_COLLECTOR_ADDRESS=localhost:50051 ..."
