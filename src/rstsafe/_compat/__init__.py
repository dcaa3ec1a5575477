"""Every private touch point of a host library, one module per host, each with its test."""
