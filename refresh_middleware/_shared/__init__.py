"""One credential for a fleet of processes and hosts: the stores and the shared credential.

`refresh_middleware.shared` is the public face of this package. It sits beside the process-wide
flight (`_flight`) and knows nothing of proxies, calls or streams: a host composes it with
`refresh_on_401` through its `refresh` callable.
"""
