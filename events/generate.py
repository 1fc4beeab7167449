"""Writes the event catalog: one JSON Schema per change event type (events/schemas/) and the
AsyncAPI 3.0 document that references them (events/asyncapi.yaml).

    python3 events/generate.py

The types follow the audit actions (domain::audit::AuditAction); a test of the suite fails
when an action has no schema, a schema no action, or an event the suite emits does not
validate against its schema. Edit TYPES here, run this, and commit what it writes.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).parent
SCHEMA_BASE = "https://establishment-users.example.sa/events/schemas/"

# action: (what the subject is, a one-line description, the keys `changes` always holds)
TYPES = {
    "organization.onboarded": ("user", "An organization was onboarded; its manager is the subject.", ["name", "plan", "establishments"]),
    "organization.settings_changed": ("organization", "The organization's settings changed.", ["settings"]),
    "balance.credited": ("organization", "The prepaid balance was credited.", ["amount_halalas", "balance_halalas"]),
    "user.subscribed": ("user", "A user was subscribed (one event per user of a group).", ["seat_id", "price_halalas", "seat_ends_at", "establishments"]),
    "activation.email_confirmed": ("user", "The user confirmed the activation link.", ["status"]),
    "activation.mobile_confirmed": ("user", "The user confirmed the activation code.", ["status"]),
    "activation.mobile_code_rejected": ("user", "A wrong activation code was entered.", ["failed_attempts"]),
    "activation.resent": ("user", "A fresh activation link and/or code was sent.", ["email", "sms"]),
    "message.resent": ("user", "A message the user missed was sent again.", ["slot"]),
    "message.undelivered": ("user", "A message ended without reaching the user (failed or undeliverable).", ["slot", "state"]),
    "permissions.changed": ("user", "The user's grants changed; `after` holds them in full.", ["before", "after", "added", "removed", "version"]),
    "user.modified": ("user", "The user's profile changed, or a contact change was requested (`pending`, masked).", []),
    "user.iqama_updated": ("user", "The registry changed the user's iqama expiry.", ["iqama_expiry"]),
    "contact.change_confirmed": ("user", "A new email or mobile was verified and is now in use (masked).", ["channel", "before", "after"]),
    "contact.code_rejected": ("user", "A wrong contact verification code was entered.", ["channel", "failed_attempts"]),
    "contact.change_cancelled": ("user", "A pending contact change was withdrawn.", ["channel"]),
    "user.suspended": ("user", "The user was suspended; access ends now.", ["reason", "status"]),
    "seat.renewed": ("user", "The user's seat was renewed for a year.", ["seat_id", "price_halalas", "seat_starts_at", "seat_ends_at", "status"]),
    "seat.reminder_queued": ("user", "A reminder that the seat ends soon was queued.", ["reminder", "seat_ends_at"]),
    "seat.expired": ("user", "The user's seat ended; access ends now.", ["seat_id", "status"]),
    "audit.exported": ("organization", "The audit trail was exported.", ["format", "rows"]),
    "ledger.exported": ("organization", "The ledger was exported.", ["format", "rows"]),
}

ACCESS = ["user.suspended", "seat.expired", "permissions.changed", "user.iqama_updated"]


def event_type(action):
    return f"sa.establishment-users.{action}.v1"


def schema(action, subject, description, required):
    kind = event_type(action)
    subject_pattern = (
        "^organizations/7[0-9]{9}/users/[12][0-9]{9}$" if subject == "user" else "^organizations/7[0-9]{9}$"
    )
    data_required = ["organization", "establishments", "actor", "changes"]
    if subject == "user":
        data_required.insert(1, "user")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}{kind}.json",
        "title": kind,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ["specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "description": "Stable across retries: de-duplicate on it."},
            "source": {"const": "urn:sa:establishment-users"},
            "type": {"const": kind},
            "subject": {"type": "string", "pattern": subject_pattern},
            "time": {"type": "string", "format": "date-time"},
            "dataschema": {"const": f"{SCHEMA_BASE}{kind}.json"},
            "datacontenttype": {"const": "application/json"},
            "data": {
                "type": "object",
                "additionalProperties": False,
                "required": data_required,
                "properties": {
                    "organization": {"type": "string", "pattern": "^7[0-9]{9}$"},
                    "user": {"type": "string", "pattern": "^[12][0-9]{9}$"},
                    "establishments": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"}},
                    "version": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "The changed record's version after the change: apply the event only when newer than what you hold.",
                    },
                    "actor": {"enum": ["person", "operator", "service", "system"]},
                    "changes": {"type": "object", "required": required},
                },
            },
        },
    }


def main():
    out = HERE / "schemas"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for action, (subject, description, required) in TYPES.items():
        path = out / f"{event_type(action)}.json"
        path.write_text(json.dumps(schema(action, subject, description, required), indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Generated by events/generate.py; edit that and run it.",
        "asyncapi: 3.0.0",
        "info:",
        "  title: Establishment user management - change events",
        "  version: 1.0.0",
        "  description: >",
        "    One CloudEvents 1.0 event per committed change, on the stack's EventBridge bus",
        "    (`<stack>-changes`, source `sa.establishment-users`, detail-type the event type, detail",
        "    the event). `id` is stable across retries; order per record by `data.version`.",
        "    Access-affecting types (suspended, expired, grants changed, iqama updated) are routed",
        "    to the AccessChanges queue and, when configured, the integrator's API destination.",
        "defaultContentType: application/cloudevents+json",
        "channels:",
        "  changes:",
        "    address: changes",
        "    description: The ChangeEvents bus.",
        "    messages:",
    ]
    for action in TYPES:
        name = action.replace(".", "_")
        lines.append(f"      {name}:")
        lines.append(f"        $ref: '#/components/messages/{name}'")
    lines += ["operations:", "  receiveChange:", "    action: receive", "    channel:", "      $ref: '#/channels/changes'", "    messages:"]
    for action in TYPES:
        lines.append(f"      - $ref: '#/channels/changes/messages/{action.replace('.', '_')}'")
    lines += ["components:", "  messages:"]
    for action, (_, description, _) in TYPES.items():
        kind = event_type(action)
        lines += [
            f"    {action.replace('.', '_')}:",
            f"      name: {kind}",
            f"      title: {kind}",
            f"      summary: {json.dumps(description, ensure_ascii=False)}",
            "      payload:",
            f"        $ref: 'schemas/{kind}.json'",
        ]
        if action in ACCESS:
            lines.append("      tags: [{ name: access }]")
    (HERE / "asyncapi.yaml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
