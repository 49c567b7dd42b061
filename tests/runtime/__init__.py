"""Running executions: transitions, guards, retry, timeouts, cancellation, saga, statecharts."""
