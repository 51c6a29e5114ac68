"""The isolated conversion: a worker process that runs the real converter, and its runner."""
