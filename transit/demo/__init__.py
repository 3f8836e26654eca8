"""``transit demo``: the stack and a simulated fleet, put under way as a customs office
does it (trackers registered, transits declared, released once the trackers report and
the seals are armed), all over the HTTP API.

``run_demo`` runs until Ctrl-C; ``run_check`` takes the same path, bounded, and says
whether fixes were stored, a truck departed and an alert was raised.
"""

from transit.demo.check import run_check
from transit.demo.run import run_demo

__all__ = ["run_check", "run_demo"]
