#!/usr/bin/env python3
"""Create a throwaway CA and a server certificate for 127.0.0.1 / localhost, with `openssl`.

Usage: make_test_ca.py OUTDIR      (any Python 3; needs the `openssl` command)

Writes into OUTDIR (created if needed):
  ca.pem       the CA certificate: give it to the client (e.g. interviewd's
               `openai.ca_file`, or ssl.create_default_context(cafile=...))
  ca.key       the CA's private key (not needed afterwards)
  server.pem   the server certificate (SAN: IP 127.0.0.1, IP ::1, DNS localhost),
               signed by the CA: mock_realtime.py --tls-cert
  server.key   its private key: mock_realtime.py --tls-key
and prints the four paths as one JSON object.  EC P-256 keys, X.509 v3 with the
extensions rustls/webpki insist on (CA: basicConstraints critical CA:TRUE and
keyCertSign; server: CA:FALSE, digitalSignature, extendedKeyUsage serverAuth,
subjectAltName), valid for 7 days from now.  Takes well under a second.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from typing import Dict


def _run(*args: str) -> None:
    r = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed ({r.returncode}):\n{r.stderr}")


def make_test_ca(outdir: str, days: int = 7) -> Dict[str, str]:
    """Create the files in `outdir`; return {"ca", "ca_key", "cert", "key"} paths."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the `openssl` command is not installed")
    os.makedirs(outdir, exist_ok=True)
    p = {k: os.path.join(outdir, v) for k, v in
         {"ca": "ca.pem", "ca_key": "ca.key", "cert": "server.pem", "key": "server.key"}.items()}
    with tempfile.TemporaryDirectory() as tmp:
        csr = os.path.join(tmp, "server.csr")
        ext = os.path.join(tmp, "server.ext")
        _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p["ca_key"])
        _run("req", "-x509", "-new", "-key", p["ca_key"], "-sha256", "-days", str(days),
             "-subj", f"/CN=interviewd test CA {secrets.token_hex(4)}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash",
             "-out", p["ca"])
        _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p["key"])
        _run("req", "-new", "-key", p["key"], "-subj", "/CN=localhost", "-out", csr)
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n")
        _run("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
             "-set_serial", "0x" + secrets.token_hex(12), "-days", str(days), "-sha256",
             "-extfile", ext, "-out", p["cert"])
    for k in ("ca_key", "key"):
        os.chmod(p[k], 0o600)
    return p


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    try:
        paths = make_test_ca(sys.argv[1])
    except (RuntimeError, OSError) as e:
        sys.stderr.write(f"make_test_ca: {e}\n")
        return 1
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
