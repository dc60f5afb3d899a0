"""The only importer of the Envoy protos (xds-protos): codecs, resource builders and bootstrap generators."""
