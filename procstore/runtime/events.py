"""The outcome events procstore raises itself: an action's ``success`` (or the event it chose),
its ``error``, a state's ``timeout``, a compound or parallel state's completion, ``done``."""

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
DONE = "done"
