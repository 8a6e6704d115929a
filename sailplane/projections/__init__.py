"""The read side: projections that fill view tables from the event log, and the views."""
