"""Search indexes (the Redis query engine, FT.*) built from a stream's schema: what to index
(schema.py), keeping the index in step across syncs behind an alias (index.py), and whether the
server can (gates.py)."""
