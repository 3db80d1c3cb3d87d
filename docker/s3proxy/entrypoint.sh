#!/bin/sh
# Render S3Proxy's configuration from the environment, make sure the buckets it must serve
# exist, then run it. Nothing secret is baked into the image: the access key pair comes from
# S3PROXY_IDENTITY / S3PROXY_CREDENTIAL at every start.
set -eu
: "${S3PROXY_IDENTITY:?set S3PROXY_IDENTITY, the access key id S3 clients sign with}"
: "${S3PROXY_CREDENTIAL:?set S3PROXY_CREDENTIAL, the secret access key S3 clients sign with}"
data=/var/lib/s3proxy

# The filesystem backend serves each directory of $data as a bucket and reads a bucket's ACL
# from the directory's mode: one that others may read (mkdir's usual 0755) is public-read and
# lists its objects to anonymous requests. 0750 is what S3Proxy gives a bucket created through
# the API: private. Created here, the warehouse bucket is there before any client asks.
for bucket in ${S3PROXY_BUCKETS-warehouse}; do
  case "$bucket" in
    *[!a-z0-9.-]* | [.-]* | *[.-]) echo "S3PROXY_BUCKETS: not a bucket name: $bucket" >&2; exit 2 ;;
  esac
  [ -d "$data/$bucket" ] || echo "creating bucket $bucket"
  mkdir -p "$data/$bucket"
  chmod 0750 "$data/$bucket"
done

# Java reads backslashes in a properties value as escapes: double them.
prop() {
  printf '%s=%s\n' "$1" "$(printf '%s' "$2" | sed 's/\\/\\\\/g')"
}
# A file rather than -D flags, so the secret is not on the java command line, which anything
# in the container's process namespace can read; only this user can read the file.
umask 077
conf=/run/s3proxy/s3proxy.properties
{
  prop s3proxy.endpoint "http://0.0.0.0:9000"
  prop s3proxy.authorization "aws-v2-or-v4"
  prop s3proxy.identity "$S3PROXY_IDENTITY"
  prop s3proxy.credential "$S3PROXY_CREDENTIAL"
  # A signed request body that is not aws-chunked is held in memory whole to check its
  # signature, and S3Proxy's default allows 128 MiB: the whole heap. 16 MiB fits it. Larger
  # objects still go through as multipart uploads (pyarrow, boto3's upload_file) or as
  # aws-chunked bodies (the AWS SDK for Java, so S3FileIO); a single plain PUT above the
  # limit is refused with MaxMessageLengthExceeded.
  prop s3proxy.v4-max-non-chunked-request-size "${S3PROXY_V4_MAX_NON_CHUNKED_REQUEST_SIZE:-16777216}"
  prop jclouds.provider "filesystem"
  prop jclouds.filesystem.basedir "$data"
} >"$conf"

# The status listener: logback would print its own set-up, some thirty lines, at every start
# (the jar's logback.xml defines an appender it does not use, and the warning makes it talk).
exec java ${S3PROXY_HEAP_OPTS:--Xms32m -Xmx128m} -XX:+UseSerialGC -Djava.awt.headless=true \
  -Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener \
  -DLOG_LEVEL="${S3PROXY_LOG_LEVEL:-info}" -jar /opt/s3proxy/s3proxy.jar --properties "$conf"
