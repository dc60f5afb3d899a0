"""A small synchronous client of the CertificateService (sidecars, CLI, tests): gRPC codes mapped to our errors."""

from __future__ import annotations

from meshactors.registry.client import GrpcClient
from meshactors.v1 import certificate_pb2 as pb
from meshactors.v1 import certificate_pb2_grpc as pb_grpc


class CertificateClient(GrpcClient):
    """CertificateService on the registry API's address."""

    stub_class = pb_grpc.CertificateServiceStub

    def sign(self, csr_pem: str, ttl_s: int = 0) -> pb.SignResponse:
        """A leaf for the CSR's key; `ttl_s` asks for a shorter lifetime than the CA's (0: the CA's)."""
        return self._call("Sign", pb.SignRequest(csr_pem=csr_pem, ttl_seconds=ttl_s))

    def bundle(self, check_interval_s: float = 0.0) -> pb.BundleResponse:
        """The roots; a sidecar's check names its interval (the CA then knows when to expect the next one)."""
        return self._call("Bundle", pb.BundleRequest(check_interval_seconds=check_interval_s))

    def show(self) -> pb.ShowResponse:
        return self._call("Show", pb.ShowRequest())

    def rotate(self, step: str, force: bool = False) -> pb.RotateResponse:
        return self._call("Rotate", pb.RotateRequest(step=step, force=force))
