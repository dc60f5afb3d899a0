"""Generated protobuf/gRPC code for meshactors.v1 (do not edit; run tools/genproto.py)."""
