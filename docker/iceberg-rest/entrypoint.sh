#!/bin/sh
# Run Apache Iceberg's REST catalog server. It reads its catalog properties from CATALOG_*
# variables: CATALOG_ dropped, "__" -> "-", "_" -> ".", lower-cased (CATALOG_S3_ENDPOINT ->
# s3.endpoint, CATALOG_IO__IMPL -> io-impl).
set -eu
if [ -z "${AWS_ACCESS_KEY_ID:-}${CATALOG_S3_ACCESS__KEY__ID:-}" ]; then
  echo "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the catalog writes table metadata to S3" >&2
  exit 2
fi
# RESTCatalogServer logs every catalog property at INFO when it starts, s3.secret-access-key
# included when it is given as CATALOG_S3_SECRET__ACCESS__KEY; its logger is kept at WARN.
exec java ${ICEBERG_REST_HEAP_OPTS:--Xms32m -Xmx128m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSSZ" \
  -Dorg.slf4j.simpleLogger.log.org.apache.iceberg.rest.RESTCatalogServer=warn \
  -cp '/opt/iceberg-rest/libs/*' org.apache.iceberg.rest.RESTCatalogServer
