"""The write side: registry shards that own VIPs, lease bookkeeping and the registry gRPC API."""
