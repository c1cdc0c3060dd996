"""A throw-away Dovecot IMAP server for tests: Debian's dovecot-imapd, started in the
foreground on a free loopback port with its own config, one user and a maildir under
a temporary directory. `make test` installs the package; nothing system-wide is used
or changed (no /etc/dovecot, no system service).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from embedded.processes import die_with_parent, free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
mail_uid = {mail_uid}
mail_gid = {mail_gid}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    """Its directory is made under the system temp dir: Dovecot's own users must be
    able to reach it, which pytest's private (0700) temp dirs do not allow."""

    root: Path | None = None
    user: str = "signup"
    password: str = "throwaway-imap-password"
    port: int = 0
    process: subprocess.Popen | None = None
    made_root: bool = False

    def start(self, timeout_s: float = 20.0) -> Dovecot:
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot is not installed: `make test` installs dovecot-imapd")
        self.port = self.port or free_port()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="comms-dovecot-"))
            self.made_root = True
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:  # Dovecot refuses root for mail and its internal users
            mail = pwd.getpwnam("dovecot")
            login_user, internal_user = "dovenull", "dovecot"
            for sub in ("mail", "home"):
                os.chown(self.root / sub, mail.pw_uid, mail.pw_gid)
            self.root.chmod(0o755)
        else:
            mail = pwd.getpwuid(os.getuid())
            login_user = internal_user = mail.pw_name
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(
            root=self.root, port=self.port, login_user=login_user,
            internal_user=internal_user, mail_uid=mail.pw_uid, mail_gid=mail.pw_gid))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.process.stderr.read().decode()}"
                                   f"{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        if self.made_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
