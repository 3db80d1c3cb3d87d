"""Refuse a queue topology on which RabbitMQ itself may drop a message.

The bridge loses nothing it has received, but RabbitMQ can discard messages before or while
the bridge holds them, silently unless a dead-letter exchange catches them:

- quorum queues have a **delivery limit** (20 by default since RabbitMQ 4.0): a message
  returned that often is dropped. The bridge never nacks (it holds a batch through a Kafka
  outage), so only crashes and lost connections count, but a crash loop would still drop;
- a **length limit** with the default ``drop-head`` overflow drops the oldest messages;
- a **message TTL** drops messages that waited too long, and a queue **expiry** deletes an
  idle queue with everything in it.

Each is fine with a dead-letter exchange (the message is moved, not dropped: the bridge
says where). And ownership: the bridge fences by ``transactional.id`` per queue, so two
instances consuming one queue at once fence each other back and forth. A queue drained by
more than one instance must be a single-active-consumer queue (standbys wait, and take
over when the active one goes).

``assess`` is pure (the queue as the management API describes it, in; findings out);
``fetch`` is the HTTP call. ``--check`` prints the findings; start-up refuses to consume
when one is a refusal, unless ``rabbitmq.accept_message_loss`` (for the loss rules) or
``rabbitmq.require_single_active_consumer: false`` (for ownership) says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from sidecar.common.errors import ConfigError

# RabbitMQ 4.0 gave quorum queues this delivery limit where none is set.
QUORUM_DEFAULT_DELIVERY_LIMIT = 20
HTTP_TIMEOUT_S = 10.0


class TopologyRefused(ConfigError):
    """A queue's settings let RabbitMQ drop messages, or break single ownership."""


class TopologyUnknown(TopologyRefused):
    """The queue's settings could not be read."""


@dataclass(frozen=True, slots=True)
class Finding:
    refuse: bool
    message: str


def _sources(info: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(queue arguments, effective policy); the API answers [] for "no policy"."""
    pol = info.get("effective_policy_definition") or {}
    return info.get("arguments") or {}, pol if isinstance(pol, dict) else {}


def _setting(info: Mapping[str, Any], arg: str, policy: str) -> Any:
    """A queue setting from its arguments (x-...) or, failing that, its effective policy
    (RabbitMQ applies the argument when both are set, except numeric limits: see below)."""
    args, pol = _sources(info)
    return args.get(arg, pol.get(policy))


def _limit(info: Mapping[str, Any], arg: str, policy: str) -> int | None:
    """A numeric limit: where argument and policy both set one, the lower applies."""
    args, pol = _sources(info)
    values = [v for v in (args.get(arg), pol.get(policy)) if isinstance(v, int)]
    return min(values) if values else None


def major_version(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def assess(queue: str, info: Mapping[str, Any], broker_version: str, *,
           accept_message_loss: bool = False,
           require_single_active_consumer: bool = True) -> list[Finding]:
    """What could go wrong on this queue; refusals first."""
    out: list[Finding] = []
    qtype = info.get("type", "classic")
    dlx = _setting(info, "x-dead-letter-exchange", "dead-letter-exchange")
    dlx_name = f"dead-letter exchange {dlx!r}" if dlx is not None else None

    def loss(what: str) -> None:
        if dlx_name is not None:
            out.append(Finding(False, f"{queue}: {what}; RabbitMQ moves such messages to "
                                      f"the {dlx_name}: they leave this pipeline there"))
        else:
            out.append(Finding(not accept_message_loss,
                               f"{queue}: {what}, and no dead-letter exchange is set: "
                               "RabbitMQ drops them silently"
                               + (" (accepted by rabbitmq.accept_message_loss)"
                                  if accept_message_loss else "")))

    if qtype == "stream":
        out.append(Finding(True, f"{queue}: a stream; the bridge consumes queues (use a "
                                 "quorum or classic queue)"))
    if qtype == "quorum":
        limit = _limit(info, "x-delivery-limit", "delivery-limit")
        if limit is None and major_version(broker_version) >= 4:
            limit = QUORUM_DEFAULT_DELIVERY_LIMIT
            where = f"the default delivery limit of RabbitMQ {broker_version}"
        else:
            where = "delivery limit"
        if limit is not None and limit >= 0:
            loss(f"messages returned {limit} times are discarded ({where}: only crashes "
                 "and lost connections count, the bridge never requeues)")
    max_len = _limit(info, "x-max-length", "max-length")
    max_bytes = _limit(info, "x-max-length-bytes", "max-length-bytes")
    overflow = _setting(info, "x-overflow", "overflow") or "drop-head"
    if (max_len is not None or max_bytes is not None) and overflow == "drop-head":
        loss(f"a length limit ({max_len} messages / {max_bytes} bytes) with overflow "
             "drop-head discards the oldest messages")
    ttl = _limit(info, "x-message-ttl", "message-ttl")
    if ttl is not None:
        loss(f"messages older than {ttl} ms expire")
    expires = _limit(info, "x-expires", "expires")
    if expires is not None:
        out.append(Finding(not accept_message_loss,
                           f"{queue}: the queue itself is deleted after {expires} ms unused, "
                           "with every message in it"))
    sac = _setting(info, "x-single-active-consumer", "single-active-consumer")
    if sac is not True:
        out.append(Finding(require_single_active_consumer,
                           f"{queue}: not a single-active-consumer queue, so two bridge "
                           "instances on it would both consume and fence each other; "
                           "declare it with x-single-active-consumer: true"
                           + ("" if require_single_active_consumer else
                              " (accepted: rabbitmq.require_single_active_consumer is off, "
                              "so run one instance per queue)")))
    if not out:
        out.append(Finding(False, f"{queue}: {qtype} queue, single active consumer, "
                                  "nothing RabbitMQ may drop"))
    return sorted(out, key=lambda f: not f.refuse)


def fetch(management_url: str, user: str, password: str, vhost: str,
          queue: str) -> tuple[dict[str, Any] | None, str]:
    """(queue as the management API describes it or None when absent, broker version)."""
    base = management_url.rstrip("/")
    try:
        with httpx.Client(auth=(user, password), timeout=HTTP_TIMEOUT_S) as http:
            overview = http.get(f"{base}/api/overview")
            overview.raise_for_status()
            version = str(overview.json().get("rabbitmq_version", ""))
            r = http.get(f"{base}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
            if r.status_code == 404:
                return None, version
            r.raise_for_status()
            return r.json(), version
    except (httpx.HTTPError, ValueError) as exc:
        raise TopologyUnknown(
            f"cannot read queue settings from the management API at {base}: {exc} "
            "(set rabbitmq.management_url, or rabbitmq.verify_topology: false to start "
            "without checking)") from exc


def declared_info(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """How the management API will describe a queue we declare with ``arguments``."""
    return {"type": arguments.get("x-queue-type", "classic"), "arguments": dict(arguments)}
