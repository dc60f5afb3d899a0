"""The xDS side: per-stream subscription state machines (delta and SotW), sessions and the ADS server."""
