"""The sans-I/O decision core: classification, idempotency, keep-alive state, attempts,
retry decisions, errors and the clock.

Nothing here imports an adapter, a tool or an I/O library: every function takes its
facts and times as arguments, so the same code serves every adapter, sync and async.
"""
