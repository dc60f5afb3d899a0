"""The only package that imports Ray: thin actor wrappers, deployment, the embedded launcher and status."""
