"""A protocol-faithful FreeSWITCH stand-in for tests, the demo and the benchmarks.

    from rater.sim import Simulator
    with Simulator(port=0) as sim:        # 127.0.0.1, any free port: sim.port
        uuid = sim.place_call("1000000001", "15557650000")
        sim.wait_for_hangup(uuid, timeout=10)

See DESIGN.md §10 and the module docstrings: templates (event header sets from real
captures), channel (one call), api (command replies), server (sockets and faults), load.
"""

from rater.sim.channel import CallState, Channel
from rater.sim.load import LoadCounters, LoadGenerator
from rater.sim.simulator import Simulator

__all__ = ["CallState", "Channel", "LoadCounters", "LoadGenerator", "Simulator"]
