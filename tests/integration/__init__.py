"""Integration tests: the clients against the embedded simulator over real sockets."""
