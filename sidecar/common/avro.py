"""Avro values in the Confluent wire format (magic byte, 4-byte schema id, Avro binary).

Thin wrapper over confluent-kafka's ``SchemaRegistryClient`` + ``AvroSerializer`` (fastavro
underneath), pointed at any Confluent-compatible registry; Apicurio's is at
``http://HOST:8081/apis/ccompat/v7``. Subjects follow the TopicNameStrategy
(``<topic>-value``), which is what Kafka Connect's AvroConverter expects by default.

Errors are translated at this boundary:

- ``ValueError``/``TypeError``: the value does not fit the schema (a poison message);
- ``RegistryUnavailable``: the registry could not be reached or refused the schema (an
  outage or a compatibility problem: retry later, do not dead-letter the message).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from .errors import BridgeError

log = logging.getLogger(__name__)


class RegistryUnavailable(BridgeError):
    """The schema registry could not register or look up a schema."""


class AvroEncoder:
    """Encodes values for topics, registering each (topic, schema) once."""

    def __init__(self, url: str, *, user_info: str | None = None,
                 auto_register: bool = True, timeout_s: int = 10) -> None:
        conf: dict[str, Any] = {"url": url, "timeout": timeout_s}
        if user_info:
            conf["basic.auth.user.info"] = user_info
        self.url = url
        self._client = SchemaRegistryClient(conf)
        self._auto_register = auto_register
        self._serializers: dict[str, AvroSerializer] = {}

    def encode(self, topic: str, schema: dict[str, Any], value: dict[str, Any]) -> bytes:
        ser = self._serializer(schema)
        try:
            out = ser(value, SerializationContext(topic, MessageField.VALUE))
        except SchemaRegistryError as exc:
            raise RegistryUnavailable(f"schema registry: {exc}") from exc
        except SerializationError as exc:
            # The serializer wraps both bad values and registry trouble; the cause tells.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ValueError | TypeError):
                raise ValueError(str(cause)) from exc
            raise RegistryUnavailable(f"schema registry: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(str(exc)) from exc
        except Exception as exc:  # connection errors come from the HTTP client
            raise RegistryUnavailable(f"schema registry: {type(exc).__name__}: {exc}") from exc
        assert out is not None
        return out

    def check(self) -> list[str]:
        """Reach the registry; returns its subjects. Raises RegistryUnavailable."""
        try:
            return list(self._client.get_subjects())
        except Exception as exc:
            raise RegistryUnavailable(f"schema registry at {self.url}: {exc}") from exc

    def _serializer(self, schema: dict[str, Any]) -> AvroSerializer:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        ser = self._serializers.get(text)
        if ser is None:
            ser = AvroSerializer(self._client, text,
                                 conf={"auto.register.schemas": self._auto_register})
            self._serializers[text] = ser
        return ser
