"""Tests of rstsafe.testing: the misbehaving server, its plugin, CLI and namespaces."""
