"""The SLA exporter: Conveyor's 15-minute promise as Prometheus metrics.

Per sink consumer group and partition, how far behind it is in seconds (from the real
timestamp of the record at its committed offset) and how many records it lost to retention;
per warehouse table, how old its newest row is and how long rows took to land; per canary
path, a synthetic event every few seconds and how long it takes to reach its table.
``conveyor-sla --config FILE`` serves them on ``/metrics``, with ``/health``.
"""
