"""The local stack as everything outside the images sees it: `make up`, `make demo`, the
benchmarks and the integration tests.

- ``stack``: endpoints (overridable from the environment), readiness by real round trips,
  restarts, and the ``python -m devstack.stack preflight|up|wait`` commands;
- ``topology``: the RabbitMQ queues our tests, demo and benchmarks declare (quorum, no
  delivery limit, single active consumer);
- ``committed``: reading back what Kafka committed (read_committed).

Product code (``sidecar/``, ``connectors/``) never imports it; the tests do.
"""
