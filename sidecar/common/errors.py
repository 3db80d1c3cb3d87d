"""Our own small exception hierarchy; third-party errors are translated at the boundary."""


class BridgeError(Exception):
    """Base of every error a bridge raises on purpose."""


class ConfigError(BridgeError):
    """The settings, routes or schemas are wrong; nothing was consumed."""


class TransactionAborted(BridgeError):
    """The Kafka transaction was aborted: nothing of it is visible; redo the whole batch."""


class FatalKafkaError(BridgeError):
    """The producer cannot go on (fenced by a newer instance, or a fatal librdkafka error).

    The process should stop without acking anything further; a restart re-initialises the
    transactional id and fences whatever zombie is left.
    """
