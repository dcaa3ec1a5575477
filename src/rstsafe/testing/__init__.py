"""rstsafe.testing: a misbehaving server that reproduces every reset cause on loopback."""
