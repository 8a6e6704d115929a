"""Adapters: what the ports of `sailplane.commands.ports` are implemented with, and workers."""
