"""The only package that imports Ray: actor wrappers, topology (actor names and kinds), controller, deployment,
the embedded launcher, status, and the driver operations (ops) the CLI and chaos use instead of Ray."""
