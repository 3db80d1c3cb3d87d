#!/usr/bin/env bash
# Credentials for the local stack: taken from the environment when set, otherwise random
# ones generated once into .engine/secrets.env (git-ignored, mode 600) and reused, because
# RabbitMQ and PostgreSQL keep the first ones in their volumes. A key added to this list
# later is appended to an existing file; the keys already there are never changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file="$root/.engine/secrets.env"
mkdir -p "$(dirname "$file")"
umask 077
touch "$file"
rand() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
added=()
# add NAME DEFAULT: NAME=${NAME:-DEFAULT}, unless the file has NAME already.
add() {
  grep -q "^$1=" "$file" && return 0
  printf '%s=${%s:-%s}\n' "$1" "$1" "$2" >>"$file"
  added+=("$1")
}
add CONVEYOR_RABBITMQ_USER conveyor
add CONVEYOR_RABBITMQ_PASSWORD "$(rand)"
add CONVEYOR_POSTGRES_USER conveyor
add CONVEYOR_POSTGRES_PASSWORD "$(rand)"
add CONVEYOR_MASK_KEY "$(rand)"
# Enrich's pii enrichment: the HMAC key of its pseudonymised fields.
add CONVEYOR_SNOWPLOW_PII_KEY "$(rand)"
# The s3 compose profile's S3-compatible store (S3Proxy) and the Iceberg sink's key pair for it.
add CONVEYOR_S3_ACCESS_KEY_ID conveyor
add CONVEYOR_S3_SECRET_ACCESS_KEY "$(rand)"
if [ ${#added[@]} -gt 0 ]; then
  echo "engine: local stack credentials generated in .engine/secrets.env: ${added[*]}" >&2
fi
