"""Real switch: refused calls hang up with the configured causes, and callers who did not
authenticate are refused by the shipped dialplan itself."""

from __future__ import annotations

import pytest

from rater.config import hangup_cause, load_config
from tests import freeswitch_world
from tests.freeswitch_sipp import Call
from tests.freeswitch_world import (
    NR,
    P1,
    POOR,
    SUSP,
    UK,
    UNKNOWN,
    RatedWorld,
)

pytestmark = [pytest.mark.freeswitch, pytest.mark.slow]
switch, rated = freeswitch_world.switch, freeswitch_world.rated  # the tier's fixtures

# FreeSWITCH's SIP answer for a hangup cause on an unanswered call (mod_sofia.c,
# hangup_cause_to_sip)
SIP_CODE = {"CALL_REJECTED": 603, "OUTGOING_CALL_BARRED": 403, "NO_ROUTE_DESTINATION": 404,
            "NORMAL_TEMPORARY_FAILURE": 503, "NORMAL_CIRCUIT_CONGESTION": 503}


def test_refusals_hang_up_with_the_configured_causes(rated: RatedWorld):
    cfg = load_config(rated.config)
    outbound = {
        "unknown_account": rated.outbound(1, UNKNOWN),       # user's accountcode unknown
        "blocked_destination": rated.outbound(2, P1, "449012345678"),  # 4490 blocked
        "no_rate": rated.outbound(3, NR),                    # norate has only 33
        "insufficient_funds": rated.outbound(4, POOR),       # balance 0
        "account_suspended": rated.outbound(5, SUSP),
    }
    unowned_did = Call(rated.lab.caller(6), "15559999999", 3.0)   # no account owns it
    runs = [rated.place(list(outbound.values())), rated.place([unowned_did])]
    seen = {**runs[0].wait(60), **runs[1].wait(60)}
    expected = [*outbound.items(), ("unknown_account", unowned_did)]
    for reason, call in expected:
        cause = hangup_cause(cfg, reason)
        got = seen.get(call.caller)
        assert got is not None, f"{reason}: sipp saw no outcome; {runs[0].errors()}"
        assert not got.answered, f"{reason}: answered"
        assert (got.status, got.cause) == (SIP_CODE[cause], cause), reason
    assert rated.refused() == {
        "unknown_account": 2, "blocked_destination": 1, "no_rate": 1,
        "insufficient_funds": 1, "account_suspended": 1}
    # nothing charged, nothing left live
    assert rated.settled(30), f"legs still live: {rated.live_legs()}"
    callers = [c.caller for _, c in expected]
    assert [c for cs in rated.cdrs(callers).values() for c in cs if c.total_cost] == []
    for account, opening in ((P1, 10_000_000), (NR, 10_000_000), (POOR, 0),
                             (SUSP, 10_000_000)):
        assert rated.account(account) == (opening, 0, 0), account


def test_unauthenticated_calls_are_refused_by_the_dialplan(rated: RatedWorld):
    # A call in the default context without digest authentication (a loopback channel
    # carries no sip_authorized): the shipped dialplan hangs it up, CALL_REJECTED, and
    # never parks it for the rater, whatever account it claims.
    esl = rated.lab.esl
    caller = rated.lab.caller(1)
    reply = esl.api(f"originate {{origination_caller_id_number={caller},"
                    f"accountcode={P1}}}loopback/{UK}/default &park()")
    assert reply.strip() == "-ERR CALL_REJECTED"
    assert rated.refused() == {}
    assert rated.account(P1) == (10_000_000, 0, 0)
