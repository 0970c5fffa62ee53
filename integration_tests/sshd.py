"""A real OpenSSH sshd for the tunnel tests: own config, host key and port, never the machine's sshd.

The daemon runs as root (sshd needs it to switch to the login user) on a free loopback port, in
the foreground (`-D -e`), with everything it reads in a private temp dir. The login user
`airbyte-tunnel` is created once per machine (`useradd`) and given TUNNEL_PASSWORD each session;
its authorized keys live in the temp dir (AuthorizedKeysFile), not in its home.

With `runner` a NetworkNamespace and `listen_address` its veth address, the daemon is the bastion
of a private network (topology_fixtures.py): reachable from the host, it reaches what runs inside.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from integration_tests.netns import HOST, Runner
from integration_tests.servers import free_port, stop_process

SSHD = os.environ.get("SSHD_BIN") or "/usr/sbin/sshd"
TUNNEL_USER = "airbyte-tunnel"
# One fixed password: every sshd of every test process (several may run at once on a machine)
# sets the same one on the shared user, so none invalidates another's.
TUNNEL_PASSWORD = "Tunnel-pw-SECRET-3f81c2"  # noqa: S105

_OPENSSH = serialization.PrivateFormat.OpenSSH
_PEM = serialization.PrivateFormat.TraditionalOpenSSL  # BEGIN RSA / EC PRIVATE KEY
_PKCS8 = serialization.PrivateFormat.PKCS8  # BEGIN PRIVATE KEY


class SshdUnavailable(RuntimeError):
    pass


def _private_text(key: PrivateKeyTypes, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _public_line(key: PrivateKeyTypes, comment: str) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} {comment}"


@dataclass
class ClientKeys:
    """Private key texts by "<type>-<format>", all authorized; `unauthorized` is a stranger's key."""

    private: dict[str, str]
    authorized_keys: str
    unauthorized: str


def make_client_keys() -> ClientKeys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ecdsa_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    private = {
        "rsa-openssh": _private_text(rsa_key, _OPENSSH),
        "rsa-pem": _private_text(rsa_key, _PEM),
        "rsa-pkcs8": _private_text(rsa_key, _PKCS8),
        "ecdsa-openssh": _private_text(ecdsa_key, _OPENSSH),
        "ecdsa-pem": _private_text(ecdsa_key, _PEM),
        "ed25519-openssh": _private_text(ed_key, _OPENSSH),
        "ed25519-pkcs8": _private_text(ed_key, _PKCS8),
    }
    authorized = "".join(
        _public_line(key, f"{name}@tests") + "\n"
        for name, key in (("rsa", rsa_key), ("ecdsa", ecdsa_key), ("ed25519", ed_key))
    )
    stranger = ed25519.Ed25519PrivateKey.generate()
    return ClientKeys(private, authorized, _private_text(stranger, _OPENSSH))


def _user_exists() -> bool:
    return subprocess.run(["id", "-u", TUNNEL_USER], capture_output=True).returncode == 0


def _ensure_user(password: str) -> None:
    """Create the login user if missing (idempotent) and set its password for this session."""
    if not _user_exists():
        created = subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", TUNNEL_USER], capture_output=True, text=True
        )
        # Another test process may have created it in between: only a still-missing user is fatal.
        if created.returncode != 0 and not _user_exists():
            raise SshdUnavailable(f"useradd {TUNNEL_USER} failed: {created.stderr.strip()}")
    subprocess.run(["chpasswd"], input=f"{TUNNEL_USER}:{password}\n", text=True, check=True)


@dataclass
class SshServer:
    keys: ClientKeys = field(default_factory=make_client_keys)
    password: str = TUNNEL_PASSWORD
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sshd-test-")))
    process: subprocess.Popen[bytes] | None = None
    # "password", or "keyboard-interactive" (through PAM, as bastions with only that method do)
    login_method: str = "password"
    # Where the daemon runs (the host, or a NetworkNamespace) and the one address it listens on.
    runner: Runner = HOST
    listen_address: str = "127.0.0.1"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    def start(self) -> SshServer:
        if not Path(SSHD).exists():
            raise SshdUnavailable(
                f"{SSHD} is missing: install OpenSSH's server (apt-get install -y openssh-server; "
                f".ci/run does) to run the SSH tunnel tests."
            )
        if os.geteuid() != 0:
            raise SshdUnavailable("the SSH tunnel tests start sshd, which must run as root.")
        _ensure_user(self.password)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

        # The login user reads its authorized_keys itself: the dir must be traversable by it.
        self.workdir.chmod(0o711)
        keys_dir = self.workdir / "authorized_keys"
        keys_dir.mkdir(mode=0o755)
        authorized = keys_dir / TUNNEL_USER
        authorized.write_text(self.keys.authorized_keys)
        authorized.chmod(0o644)

        host_key = self.workdir / "host_ed25519_key"
        fd = os.open(host_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(_private_text(ed25519.Ed25519PrivateKey.generate(), _OPENSSH))

        config = self.workdir / "sshd_config"
        interactive = self.login_method == "keyboard-interactive"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.listen_address}\n"
            f"HostKey {host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {keys_dir}/%u\n"
            "StrictModes no\n"
            f"UsePAM {'yes' if interactive else 'no'}\n"
            "PubkeyAuthentication yes\n"
            f"PasswordAuthentication {'no' if interactive else 'yes'}\n"
            f"KbdInteractiveAuthentication {'yes' if interactive else 'no'}\n"
            "PermitRootLogin no\n"
            f"AllowUsers {TUNNEL_USER}\n"
            "AllowTcpForwarding yes\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "MaxStartups 100:30:200\n"
            "MaxAuthTries 10\n"
            "LogLevel VERBOSE\n"
        )
        with self.log_file.open("wb") as log:
            self.process = self.runner.popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((self.listen_address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_file.read_text(errors="replace")[-2000:]
                self.stop()
                raise SshdUnavailable(f"sshd did not start on {self.listen_address}:{self.port}: {log_text}")
            time.sleep(0.05)

    def sessions(self) -> int:
        """How many connections the daemon is serving: its forked children."""
        if self.process is None:
            return 0
        count = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                count += 1
        return count

    def wait_for_sessions(self, expected: int, timeout: float = 5) -> int:
        deadline = time.monotonic() + timeout
        while (count := self.sessions()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def tunnel_key(self, key_name: str = "ed25519-openssh", **overrides: object) -> dict[str, object]:
        """A `tunnel_method` block for key authentication through this sshd."""
        block: dict[str, object] = {
            "tunnel_method": "SSH_KEY_AUTH", "tunnel_host": self.listen_address, "tunnel_port": self.port,
            "tunnel_user": TUNNEL_USER, "ssh_key": self.keys.private[key_name],
        }
        block.update(overrides)
        return block

    def tunnel_password(self, **overrides: object) -> dict[str, object]:
        """A `tunnel_method` block for password authentication through this sshd."""
        block: dict[str, object] = {
            "tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_host": self.listen_address,
            "tunnel_port": self.port, "tunnel_user": TUNNEL_USER, "tunnel_user_password": self.password,
        }
        block.update(overrides)
        return block
