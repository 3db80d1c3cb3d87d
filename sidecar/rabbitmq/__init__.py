"""The RabbitMQ -> Kafka bridge: every message lands in Kafka exactly once.

Modules: ``settings`` (typed config), ``routing`` (rules -> topic, key), ``identity``
(event_id), ``core`` (the pure decision for a batch), ``batching``, ``payloads`` (schema
files), ``amqp`` (every pika call), ``bridge`` (the I/O loop), ``metrics``,
``settle`` (the ack policy), ``topology`` (queue settings RabbitMQ could drop messages
under), ``check`` and ``cli``. The dedup ledger is ``sidecar.exactly_once.ledger``, shared with the
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
   one transaction (``transactional.id`` = ``conveyor-rabbitmq-<stream>-<queue>``: whoever
   owns the queue next fences the previous owner, see ``bridge``).
4. Only after ``commit_transaction()`` returns is RabbitMQ acked (``multiple`` up to the
   batch's last tag). On abort the batch is held and retried, never nacked (``settle``).

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

Two instances on one queue
--------------------------
Instance A passes its pre-commit channel check, loses its AMQP connection, and RabbitMQ
hands the batch to B. Before this release B could read the ledger before A's records
arrived, and both committed. Now the queue is single-active-consumer (start-up refuses a
shared queue without it) and ownership is the queue's ``transactional.id``: B's first batch
calls ``init_transactions()``, which either waits until A's commit is complete (B's ledger
read that follows then sees A's ids) or fences A, so A's commit fails and nothing of it is
visible. Either way the batch lands once.
"""
