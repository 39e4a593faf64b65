"""Provider clients: each module owns its provider's URLs, wire structs and code table."""
