"""The domain: aggregates, their events and rules; it imports nothing else of Sailplane."""
