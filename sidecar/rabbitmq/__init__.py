"""The RabbitMQ -> Kafka bridge: every message lands in Kafka exactly once.

Modules: ``settings`` (typed config), ``routing`` (rules -> topic, key), ``identity``
(event_id), ``core`` (the pure decision for a batch), ``batching``, ``payloads`` (schema
files), ``amqp`` (every pika call), ``bridge`` (the I/O loop), ``metrics``,
``check`` and ``cli``. The dedup ledger is ``sidecar.exactly_once.ledger``, shared with the
Snowplow collector.

How exactly-once holds
----------------------
1. Deliveries are batched (``batch.max_messages`` / ``max_bytes`` / ``max_wait_ms``).
2. For a batch, the ledger is consulted: it is first read (read_committed) past every
   transaction that had written to it before we asked, so whatever another instance (or
   our previous life) committed is known. This covers RabbitMQ redeliveries and publisher
   retries (a message re-published with the same message_id). With ``ledger.sync:
   redelivered`` the read-to-end happens only for batches holding a redelivered delivery.
3. Routed records, dead letters and one ledger record per new event_id are produced in
   one transaction (``transactional.id`` = ``conveyor-rabbitmq-<stream>-<instance>-<queue>``;
   a restarted instance fences its zombie).
4. Only after ``commit_transaction()`` returns is RabbitMQ acked (``multiple`` up to the
   batch's last tag). On abort everything un-acked is nacked with requeue, in order.

A crash after 3 and before 4 makes RabbitMQ redeliver; step 2 finds the ids and the batch
becomes acks only.

The window, and what happens past it
------------------------------------
The ledger remembers the last ``ledger.window_events`` (default 500,000, about 70 MB) event_ids
of the stream, up to ``ledger.max_age_s`` (default 7 days) old, reloading them on start.
Downtime does not shrink it (nothing is committed while all instances are down). A
redelivery is a no-op as long as fewer than ``window_events`` other events of the stream
were committed between the original commit and the redelivery: about 14 minutes of the
stream at 580 events/s, or nearly 3 minutes at a 3,000/s peak, while RabbitMQ redelivers
within seconds of a crash (a heartbeat timeout at worst). Past the window the event is
produced a second time with the same event_id; the warehouse sinks upsert by event_id, so
it is still one row. Size the window to the longest a delivery can stay un-acked after
its commit (``consumer_timeout`` on the RabbitMQ side bounds that) times the peak rate.

Known narrow gap: if an instance loses RabbitMQ while its commit is in progress, its
deliveries are redelivered to another instance at once. We re-check the channel right
before ``commit_transaction()`` and abort if it is gone; only a loss inside that last call,
combined with the other instance reading the ledger before our records reach the broker,
can still duplicate (again absorbed by the sinks' upsert).
"""
