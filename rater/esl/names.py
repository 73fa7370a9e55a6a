"""Every header, channel variable, event, content-type and event-format name the daemon
uses on the Event Socket. No code: other modules refer to these, never to bare strings."""

from __future__ import annotations

from typing import Final

from rater.esl import frames


class Header:
    """Header names."""

    CONTENT_TYPE: Final = frames.CONTENT_TYPE
    CONTENT_LENGTH: Final = frames.CONTENT_LENGTH
    CONTENT_DISPOSITION: Final = "Content-Disposition"
    REPLY_TEXT: Final = "Reply-Text"
    JOB_UUID: Final = "Job-UUID"
    JOB_COMMAND: Final = "Job-Command"
    EVENT_NAME: Final = "Event-Name"
    EVENT_SUBCLASS: Final = "Event-Subclass"
    CORE_UUID: Final = "Core-UUID"
    EVENT_SEQUENCE: Final = "Event-Sequence"
    EVENT_DATE_TIMESTAMP: Final = "Event-Date-Timestamp"
    UNIQUE_ID: Final = "Unique-ID"
    CHANNEL_CALL_UUID: Final = "Channel-Call-UUID"
    CALL_DIRECTION: Final = "Call-Direction"
    ANSWER_STATE: Final = "Answer-State"
    HANGUP_CAUSE: Final = "Hangup-Cause"
    CALLER_ID_NUMBER: Final = "Caller-Caller-ID-Number"
    DESTINATION_NUMBER: Final = "Caller-Destination-Number"
    CREATED_TIME: Final = "Caller-Channel-Created-Time"
    ANSWERED_TIME: Final = "Caller-Channel-Answered-Time"
    HANGUP_TIME: Final = "Caller-Channel-Hangup-Time"
    JSON_BODY: Final = "_body"  # the body of a text/event-json event
    VARIABLE_PREFIX: Final = "variable_"


class Var:
    """Channel variable names (read as `variable_<name>`)."""

    BILLSEC: Final = "billsec"
    BILLMSEC: Final = "billmsec"
    BILLUSEC: Final = "billusec"
    ACCOUNTCODE: Final = "accountcode"
    RATER_DIRECTION: Final = "rater_direction"
    RATER_ACCOUNT: Final = "rater_account"
    RATER_DESTINATION: Final = "rater_destination"


class EventName:
    """Event names (the value of Event-Name) and the subscription wildcard."""

    ALL: Final = "ALL"
    CUSTOM: Final = "CUSTOM"
    HEARTBEAT: Final = "HEARTBEAT"
    BACKGROUND_JOB: Final = "BACKGROUND_JOB"
    SHUTDOWN: Final = "SHUTDOWN"
    CHANNEL_CREATE: Final = "CHANNEL_CREATE"
    CHANNEL_PARK: Final = "CHANNEL_PARK"
    CHANNEL_ANSWER: Final = "CHANNEL_ANSWER"
    CHANNEL_HANGUP: Final = "CHANNEL_HANGUP"
    CHANNEL_HANGUP_COMPLETE: Final = "CHANNEL_HANGUP_COMPLETE"
    CHANNEL_DESTROY: Final = "CHANNEL_DESTROY"


class ContentType:
    AUTH_REQUEST: Final = "auth/request"
    COMMAND_REPLY: Final = "command/reply"
    API_RESPONSE: Final = "api/response"
    EVENT_PLAIN: Final = "text/event-plain"
    EVENT_JSON: Final = "text/event-json"
    DISCONNECT_NOTICE: Final = "text/disconnect-notice"
    RUDE_REJECTION: Final = "text/rude-rejection"


class EventFormat:
    PLAIN: Final = "plain"
    JSON: Final = "json"


LINGER: Final = "linger"  # Content-Disposition of a disconnect notice in linger mode
