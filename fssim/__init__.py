"""fssim: a protocol-faithful FreeSWITCH stand-in for the tests, the demo and the benchmarks.

    from fssim import Simulator
    with Simulator(port=0) as sim:        # 127.0.0.1, any free port: sim.port
        uuid = sim.place_call("1000000001", "15557650000")
        sim.wait_for_hangup(uuid, timeout=10)

    with Simulator(port=0, decision_socket=("127.0.0.1", 8084)) as sim:
        ...                               # each call first asks the rater there (`socket`)

It imports nothing from the daemon (`rater`), and the daemon never imports it: the demo
(`rater_demo`) and the `fssim` command (`python -m fssim`) run it. See DESIGN.md §10 and the
module docstrings: captured (the real captures, data files in captures/), templates (event
header sets compiled from them), channel (one call), dptools (the dialplan applications it
runs), api (command replies), connection and server (sockets), fault_switches (faults),
outbound and socket_data (the `socket` application: the decision socket), load; the
Simulator (simulator) ties them together and is the sink each of them is given.
"""

from fssim.channel import CallState, Channel
from fssim.load import LoadCounters, LoadGenerator
from fssim.simulator import Simulator

__all__ = ["CallState", "Channel", "LoadCounters", "LoadGenerator", "Simulator"]
