#!/bin/sh
# conveyor-connectors preview runs this in the Connect image: the worker's own libs and plugin
# path, so converters and transforms load exactly as the worker loads them. JSON on stdout,
# logs (warnings only) on stderr.
exec java ${PREVIEW_HEAP_OPTS:--Xms64m -Xmx384m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/connect/config/log4j2-preview.properties \
  -cp '/opt/connect/libs/*:/opt/connect/preview/*' io.conveyor.preview.Preview "$@"
