"""The xDS side: per-stream subscription state machines (delta and SotW), sessions, and the ADS host that serves
whatever its sources (meshactors.resources.source) give it. Speaks only the resource contract, never snapshot."""
