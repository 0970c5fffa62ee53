"""SSH tunnel to a Redis host behind a bastion: local 127.0.0.1:<free port> -> bastion -> Redis.

Built on paramiko directly rather than sshtunnel's forwarder: sshtunnel logs and swallows the
causes of failure (it reports only "Could not establish session to SSH gateway"), while `check`
must say which step failed. The steps, each with its own message:

  SSH connect     TCP to the bastion and the SSH handshake
  SSH auth        the key (from memory, never written to disk) or the password
  Tunnel forward  the bastion opens a connection to the Redis host:port (tried up front each
                  time a server is opened through the forward, so a node gone since says so)

Host keys: this config has no field for the bastion's host key, so it is not checked (Airbyte's
standard tunnel does the same). The session is encrypted, but a machine that can impersonate the
bastion could see the traffic: use TLS to Redis as well where that matters, since TLS through the
tunnel still verifies the Redis certificate against the real Redis host name.

The tunnel is a context manager: its listener, threads, channels and SSH session are closed on
every exit path (success, error, KeyboardInterrupt). Its threads are daemons, so even a stuck
channel can never keep the process alive.

Modules: session.py (connect, authenticate, one forward per address), forward.py (a local
listener whose connections are carried over the SSH session), keys.py (the private key).
"""
