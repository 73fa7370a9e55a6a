"""FreeSWITCH's Event Socket, from bytes to a connection that stays up.

    frames.py      bytes in any chunking -> frames, and back; no I/O
    names.py       every header, variable, event, content-type and format name
    replies.py     the frames that are not events: replies, notices, the rest kept raw
    events.py      ChannelEvent: the typed accessors both event readers share
    plain.py       the text/event-plain reader (targeted byte searches, lazy decoding)
    jsonevent.py   the text/event-json reader
    messages.py    frame -> typed message (picks the reader or reply type)
    commands.py    commands as exact bytes, api command lines, reply checks; no I/O
    dispatch.py    KeyedDispatcher: one channel's events in order, channels concurrently
    link.py        one socket: handshake, reader, replies in order, deadlines, liveness
    connection.py  EslConnection: one node kept connected (reconnect, backoff, state)
    handlers.py    greenswitch-style register_handle(), on greenswitch's own registry

Nothing is imported here, so `frames` and the readers load without gevent.
"""
