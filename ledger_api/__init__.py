"""HTTP API, pages and the command line: the only layer that knows FastAPI."""
