"""
The gateway's built-in policies: one package or module per concern.

Each is built per route from its configuration section and runs in the
order `twistgate.chain` lists; none imports another.
"""
