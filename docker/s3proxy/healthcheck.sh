#!/bin/sh
# Healthy when a signed HEAD of the first bucket succeeds: the server answers S3 requests, the
# key pair of the environment is accepted and the bucket exists. curl reads the key pair from
# its standard input (-K -), so the secret is never on a command line.
set -eu
bucket=${S3PROXY_BUCKETS-warehouse}
bucket=${bucket%% *}
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
printf 'user = "%s:%s"\n' "$(esc "$S3PROXY_IDENTITY")" "$(esc "$S3PROXY_CREDENTIAL")" |
  curl -sSf -o /dev/null -m 3 -K - --aws-sigv4 "aws:amz:us-east-1:s3" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -I "http://127.0.0.1:9000/$bucket"
