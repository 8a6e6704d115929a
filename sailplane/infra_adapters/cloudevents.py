"""Events on Kafka: CloudEvents 1.0 in structured JSON mode, per the Kafka protocol binding.

Each message carries the header `content-type: application/cloudevents+json` (`HEADERS`)
and this value:

    {"specversion": "1.0", "id": "<uuid5 of aggregate id and version>",
     "source": "/sailplane/organizations/<org>", "type": "sailplane.identity.Team.Created",
     "subject": "<aggregate id>", "time": "...Z", "datacontenttype": "application/json",
     "sequence": "00000000000000000042",          # global log position, zero-padded string
     "sailplaneposition": 42, "sailplaneversion": 1, "sailplaneactor": "member:...",
     "sailplaneorg": "<org>", "sailplaneclass": "sailplane.domain.identity:Team.Created",
     "data": {...the event's own fields, named in camelCase as the REST API names them...}}

Extension attribute names stay within the specification's 20 characters. The official
SDK's Kafka conversion was not used: in structured mode it sends the data's content type
(`application/json`) as the header and drops `datacontenttype` from the envelope, where
the binding asks for `application/cloudevents+json`; its readers parse these messages.

Messages are keyed by aggregate id, so every event of one aggregate lands on one
partition, in order.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.utils import resolve_topic

from sailplane.projections.event_log import LoggedEvent, jsonable

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS = [("content-type", CONTENT_TYPE.encode())]
_encoder = msgspec.json.Encoder()


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A message as read back from Kafka. New attributes get defaults; unknown ones are ignored."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str = ""
    time: str = ""
    sequence: str = ""
    sailplaneposition: int = 0
    sailplaneversion: int = 0
    sailplaneactor: str = ""
    sailplaneorg: str = ""
    sailplaneclass: str = ""
    sailplaneorganization: str = ""  # the organization's attribute before it was shortened
    data: dict[str, Any] = {}


_cloud_event_decoder = msgspec.json.Decoder(CloudEvent)


def encode(event: LoggedEvent) -> bytes:
    return _encoder.encode(
        {
            "specversion": SPEC_VERSION,
            "id": event.id,
            "source": f"/sailplane/organizations/{event.organization_id}",
            "type": event.type,
            "subject": event.aggregate_id,
            "time": jsonable(event.time),
            "datacontenttype": "application/json",
            "sequence": f"{event.position:020d}",
            "sailplaneposition": event.position,
            "sailplaneversion": event.aggregate_version,
            "sailplaneactor": event.actor,
            "sailplaneorg": event.organization_id,
            "sailplaneclass": event.event_class,
            "data": {camel(k): v for k, v in event.data.items()},
        }
    )


def camel(name: str) -> str:
    """A field name as the REST API names it (`default_role_id` -> `defaultRoleId`)."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def decode(payload: bytes) -> CloudEvent:
    return _cloud_event_decoder.decode(payload)


def to_domain_event(message: CloudEvent) -> Any:
    """Rebuild the domain event object a message carries (for Sailplane's own consumers)."""
    event_class = resolve_topic(message.sailplaneclass)
    names = {camel(name): name for name in getattr(event_class, "__dataclass_fields__", {})}
    fields: dict[str, Any] = {
        **{names.get(key, key): value for key, value in message.data.items()},
        "originator_id": message.subject,
        "originator_version": message.sailplaneversion,
        "timestamp": message.time,
        "organization_id": message.sailplaneorg or message.sailplaneorganization,
        "actor": message.sailplaneactor,
    }
    if "originator_topic" in {f for f in getattr(event_class, "__dataclass_fields__", {})}:
        module, _, qualname = message.sailplaneclass.partition(":")
        fields["originator_topic"] = f"{module}:{qualname.rpartition('.')[0]}"
    return msgspec.convert(fields, event_class, strict=False)
