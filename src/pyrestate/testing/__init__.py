"""Test services written with the Restate SDK against an embedded pyrestate.

    from pyrestate.testing import RestateTestServer

    def test_greet():
        with RestateTestServer(app) as restate:
            assert restate.call("Greeter", "greet", "Ada") == "Hello, Ada!"

With pytest, the plugin gives the ``restate_server`` fixture (define ``restate_app``).
"""

from pyrestate.testing.server import InvocationError, RestateTestServer, VirtualClock, wait_for

__all__ = ["InvocationError", "RestateTestServer", "VirtualClock", "wait_for"]
