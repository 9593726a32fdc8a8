"""Model commands: `sim run`, `sim check`."""
