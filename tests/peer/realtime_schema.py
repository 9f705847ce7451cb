"""Shared validation of Realtime API (GA) server events against the official SDK types.

Every event must be a JSON object with string `type` and `event_id`.
`interview.*` events (our own extensions) get only that check.  Any other event
is validated in pydantic strict mode against the member of
`openai.types.realtime.RealtimeServerEvent` whose `type` literal matches, and
any key the SDK model does not declare (kept silently by the SDK's
`extra="allow"` models) is reported as an error, at any nesting depth.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError
from openai.types.realtime import RealtimeServerEvent

CUSTOM_PREFIX = "interview."

# RealtimeServerEvent is Annotated[Union[...], PropertyInfo(discriminator="type")];
# PropertyInfo is SDK metadata that pydantic ignores, so dispatch on `type` ourselves.
_MEMBERS = get_args(get_args(RealtimeServerEvent)[0])
EVENT_CLASSES: Dict[str, type] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in _MEMBERS
}
_ADAPTERS: Dict[str, TypeAdapter] = {}

# Keys the real API sends that the SDK's model for the event does not declare
# (it keeps them as extras). The session id is how a client learns which
# transcript is its own, so interviewd sends it as the real API does.
DOCUMENTED_EXTRAS = {
    ("session.created", "session.id"),
    ("session.created", "session.object"),
    ("session.created", "session.expires_at"),
    # interviewd's own, documented in docs/protocol.md (Resume): the token
    # that resumes an `open`-mode session after a dropped connection.
    ("session.created", "session.resume_token"),
}


def _extras(obj: Any, path: str) -> List[str]:
    """Paths of keys that validated models kept as undeclared extras."""
    out: List[str] = []
    if isinstance(obj, BaseModel):
        for key in obj.model_extra or {}:
            out.append(f"{path}.{key}" if path else key)
        for name in type(obj).model_fields:
            out += _extras(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += _extras(v, f"{path}.{i}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out += _extras(v, f"{path}.{k}")
    return out


def _is_branch_mismatch(e: Any) -> bool:
    # Union errors are located under the member's class name, e.g.
    # item.RealtimeConversationItemUserMessage.role; a wrong `type`/`role`
    # literal there means "not this member", which is noise.
    loc = e["loc"]
    return (
        e["type"] == "literal_error"
        and len(loc) >= 2
        and loc[-1] in ("type", "role")
        and isinstance(loc[-2], str)
        and loc[-2][:1].isupper()
    )


def _fmt(err: ValidationError) -> str:
    errs = err.errors()
    dead = {e["loc"][:-1] for e in errs if _is_branch_mismatch(e)}
    kept = [e for e in errs if not any(e["loc"][: len(d)] == d for d in dead)]
    # If no union member matched type/role at all, report just those mismatches.
    shown = kept or [e for e in errs if _is_branch_mismatch(e)]
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in shown)


def validate_event(event: Any) -> Optional[str]:
    """Return None if `event` (parsed JSON) is a valid server event, else an error message."""
    if not isinstance(event, dict):
        return "event is not a JSON object"
    etype, eid = event.get("type"), event.get("event_id")
    if not isinstance(etype, str) or not etype:
        return "missing or non-string `type`"
    if not isinstance(eid, str) or not eid:
        return "missing or non-string `event_id`"
    if etype.startswith(CUSTOM_PREFIX):
        return None
    cls = EVENT_CLASSES.get(etype)
    if cls is None:
        return f"unknown server event type {etype!r}"
    adapter = _ADAPTERS.setdefault(etype, TypeAdapter(cls))
    try:
        model = adapter.validate_python(event, strict=True)
    except ValidationError as e:
        return f"{cls.__name__}: {_fmt(e)}"
    extra = [k for k in _extras(model, "") if (etype, k) not in DOCUMENTED_EXTRAS]
    if extra:
        return f"{cls.__name__}: fields not in the SDK model: {', '.join(extra)}"
    return None


def validate_line(line: str) -> tuple[Optional[str], Optional[str]]:
    """Parse one JSON line; return (type or None, error or None)."""
    try:
        event = json.loads(line)
    except ValueError as e:
        return None, f"invalid JSON: {e}"
    etype = event.get("type") if isinstance(event, dict) else None
    return (etype if isinstance(etype, str) else None), validate_event(event)
