"""The contract runner: the hosts' own test suites, plain and with rstsafe swapped in.

See docs/contract.md. Entry point: ``scripts/contract`` (``python -m contract``).
"""
