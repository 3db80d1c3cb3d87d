#!/bin/sh
# Format the KRaft storage once (the data volume keeps it), then run the broker.
set -eu
CONFIG=/opt/kafka/config/server.properties
CP='/opt/kafka/libs/*'
LOG="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  echo "formatting KRaft storage for cluster ${KAFKA_CLUSTER_ID}"
  java $LOG -cp "$CP" kafka.tools.StorageTool format \
    --cluster-id "$KAFKA_CLUSTER_ID" --config "$CONFIG" --ignore-formatted
fi
# The broker's JMX metrics for Prometheus on :9404 (monitoring/jmx/kafka.yml); only the
# broker gets the agent, not the one-off format step above.
AGENT=""
if [ -n "${JMX_EXPORTER_PORT-9404}" ]; then
  AGENT="-javaagent:/opt/jmx/jmx_prometheus_javaagent.jar=${JMX_EXPORTER_PORT-9404}:/opt/kafka/config/jmx-exporter.yml"
fi
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -Djava.awt.headless=true $AGENT $LOG -cp "$CP" kafka.Kafka "$CONFIG"
