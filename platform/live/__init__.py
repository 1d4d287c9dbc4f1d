"""Live mode: the same edge and cloud services over a real MQTT broker and SQL store, in wall time."""
