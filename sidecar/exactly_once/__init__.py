"""The exactly-once layer both bridges stand on.

- ``producer``: a transactional producer that follows librdkafka's contract literally
  (retriable: retry the same call; abortable: abort, retried until it is decided; fatal: the
  producer is done and a new one must fence it), and names the record Kafka refused;
- ``ledger``: the dedup ledger, a topic of committed event ids read to its end before a
  redelivery is decided;
- ``watchdog``: ends the process when a librdkafka call blocks far past its timeout (it
  can, in ``send_offsets_to_transaction``), so that a restart fences the stuck client;
- ``topics``: topic creation with timeouts, shared by every process that creates topics.

Nothing here knows RabbitMQ or HTTP: inputs are acked (or answered) by the bridges only
after ``TransactionalProducer.commit`` returned.
"""
