"""Reconcile two landings of one stream: what is missing, twice, different or late, per
bucket of event time, and where in Kafka to replay each gap from (``conveyor-reconcile``)."""
