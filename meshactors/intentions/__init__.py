"""Intentions: which mesh identities may call which destination (pure model, validation and RBAC compilation)."""
