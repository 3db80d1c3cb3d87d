"""Snowplow enrich: raw records in, good events and bad rows out, in one Kafka transaction.

- ``core``: one raw record to its outputs, never raising (pure);
- ``writer``: dedup by event id (ledger), Avro, the transaction with the consumer's offsets;
- ``runner``: the consume-transform-produce loop of one consumer-group member;
- ``cli``: ``conveyor-bridge snowplow-enrich``.
"""
