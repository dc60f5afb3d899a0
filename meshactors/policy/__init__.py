"""Central traffic policy per VIP, the pure half: the document model, its loader and validator, merge and codec.

No I/O and no protos: storage (etcd), the PolicyService and delivery import this package; the Envoy and gRPC
compilers live in `meshactors.envoy.policy`.
"""
