"""Who may do what: API tokens, the identities they name and the rules that decide each request (pure logic)."""
