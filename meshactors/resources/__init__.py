"""The neutral resource contract between the read side (sources, builders) and the xDS side (sessions, host).

Pure value types and rules only: a versioned resource, a typed snapshot keyed by (type URL, name) in xDS send
order with its `consistent()` check, variants per client kind, and the `Source` protocol the xDS host serves
from. Neither `meshactors.snapshot` nor `meshactors.xds` imports the other; both import this package.
"""
