"""pytest plugins, one per variant, that swap rstsafe's classes in for the host's public names."""
