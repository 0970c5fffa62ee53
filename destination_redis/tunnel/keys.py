"""The SSH private key from the config's text, in memory only."""

from __future__ import annotations

import io

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from destination_redis.errors import ConnectStepError


def load_private_key(text: str) -> paramiko.PKey:
    """An SSH private key from its text: RSA, ECDSA or Ed25519; OpenSSH, PEM or PKCS#8 format.

    cryptography reads every format; the key is re-serialised in memory to the OpenSSH format,
    which paramiko's key class of that type reads. Nothing touches the disk.
    """
    data = text.replace("\r\n", "\n").strip().encode() + b"\n"
    key: PrivateKeyTypes
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _key_error(
            "ssh_key is protected by a passphrase, and the config has no field for one",
            "Remove the passphrase from a copy of the key (ssh-keygen -p -N '' -f <copy>) and "
            "paste that copy.",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise _key_error(
            "ssh_key is not a private key in OpenSSH or PEM format",
            "Paste the whole private key, from its -----BEGIN line to its -----END line "
            "(RSA, ECDSA or Ed25519).",
        ) from None
    key_class: type[paramiko.PKey]
    if isinstance(key, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    else:
        raise _key_error(
            f"ssh_key is a {type(key).__name__.removeprefix('_')} key, which is not supported",
            "Use an RSA, ECDSA or Ed25519 key.",
        )
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    loaded: paramiko.PKey = key_class.from_private_key(io.StringIO(openssh))
    return loaded


def _key_error(detail: str, advice: str) -> ConnectStepError:
    return ConnectStepError(f"The SSH key could not be used: {detail}. {advice}")
