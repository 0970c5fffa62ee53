"""Reaching one Redis server: tunnel -> TCP -> TLS -> AUTH -> SELECT, and what the server can do.

server.py    the server facts (version, mode, product) and error codes of replies
endpoint.py  where connections go (direct, or the local end of an SSH forward) and their pool
probe.py     the connection steps in one round trip, each failure naming its step
failures.py  a connection lost at a step (TLS refused late, plain vs TLS port), error answers' text
reach.py     one TLS context and one SSH session per command; an endpoint per announced address
"""
