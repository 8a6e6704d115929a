"""The use cases (application services) and the ports they need (`ports.py`)."""
