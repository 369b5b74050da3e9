"""Running one command for the agent, isolated as far as the host allows.

A ``Sandbox`` runs an argv in a directory with a timeout and returns a ``CommandResult``;
it never raises for the command's failure. ``BwrapSandbox`` isolates with bubblewrap;
``RlimitSandbox`` is the fallback that needs nothing installed. Both run the command the
same way (``process.run_confined``); ``CommandResult.isolation`` records which one ran.
"""

from hybrid_agent.agents.sandbox.base import CommandResult, Sandbox, SandboxLimits
from hybrid_agent.agents.sandbox.bwrap import BwrapSandbox
from hybrid_agent.agents.sandbox.factory import SandboxUnavailable, make_sandbox
from hybrid_agent.agents.sandbox.output import HeadTailBuffer
from hybrid_agent.agents.sandbox.rlimit import RlimitSandbox

__all__ = [
    "BwrapSandbox",
    "CommandResult",
    "HeadTailBuffer",
    "RlimitSandbox",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "make_sandbox",
]
