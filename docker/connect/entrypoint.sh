#!/bin/sh
# Render the worker config (defaults + CONNECT_* environment), then run a distributed worker.
set -eu
conf=/tmp/connect-distributed.properties
cp /opt/connect/config/connect-distributed.properties "$conf"
echo "rest.advertised.host.name=${CONNECT_REST_ADVERTISED_HOST_NAME:-$(hostname)}" >>"$conf"
env | grep '^CONNECT_' | grep -v '^CONNECT_REST_ADVERTISED_HOST_NAME=' | while IFS='=' read -r name value; do
  key=$(echo "${name#CONNECT_}" | tr 'A-Z_' 'a-z.')
  echo "$key=$value" >>"$conf"
done
# The worker's JMX metrics for Prometheus on :9404 (monitoring/jmx/connect.yml).
AGENT=""
if [ -n "${JMX_EXPORTER_PORT-9404}" ]; then
  AGENT="-javaagent:/opt/connect/jmx/jmx_prometheus_javaagent.jar=${JMX_EXPORTER_PORT-9404}:/opt/connect/config/jmx-exporter.yml"
fi
exec java ${CONNECT_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true $AGENT \
  -Dlog4j2.configurationFile=/opt/connect/config/log4j2.properties \
  -cp '/opt/connect/libs/*' org.apache.kafka.connect.cli.ConnectDistributed "$conf"
