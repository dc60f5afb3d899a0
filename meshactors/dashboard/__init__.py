"""The mesh dashboard: what it shows (pure shaping in `view`) and its HTTP server (`http`); the actor is in runtime."""
