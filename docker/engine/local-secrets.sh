#!/usr/bin/env bash
# Credentials for the local stack: taken from the environment when set, otherwise random
# ones generated once into .engine/secrets.env (git-ignored, mode 600) and reused, because
# RabbitMQ and PostgreSQL keep the first ones in their volumes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file="$root/.engine/secrets.env"
[ -f "$file" ] && exit 0
mkdir -p "$(dirname "$file")"
umask 077
rand() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
cat >"$file" <<EOF2
CONVEYOR_RABBITMQ_USER=\${CONVEYOR_RABBITMQ_USER:-conveyor}
CONVEYOR_RABBITMQ_PASSWORD=\${CONVEYOR_RABBITMQ_PASSWORD:-$(rand)}
CONVEYOR_POSTGRES_USER=\${CONVEYOR_POSTGRES_USER:-conveyor}
CONVEYOR_POSTGRES_PASSWORD=\${CONVEYOR_POSTGRES_PASSWORD:-$(rand)}
CONVEYOR_MASK_KEY=\${CONVEYOR_MASK_KEY:-$(rand)}
EOF2
echo "engine: local stack credentials generated in .engine/secrets.env" >&2
