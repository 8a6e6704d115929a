"""The HTTP API: handlers that parse, authorize, call one use case or view query, and answer."""
