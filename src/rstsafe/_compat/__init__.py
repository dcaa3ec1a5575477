"""Every place where rstsafe relies on a host library's private names, one module per host.

Each touch point is listed with the host version it was read from; ``tests/test_compat_*.py``
checks each one against the installed host and fails loudly (naming the touch point) when the
host changes it. Code elsewhere in rstsafe imports host internals only through these modules.
"""
