"""A real LiveKit server (the binary `scripts/setup.sh` builds from the Go module proxy) on
loopback, on free ports, with webhooks pointed at the backend under test."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

VERSION = "v1.13.5"
CACHE_DIR = Path(os.environ.get("VOICE_CACHE_DIR", Path.home() / ".cache" / "voice-backend"))
BINARY = CACHE_DIR / f"livekit-{VERSION}" / "server"
API_KEY = "devkey"
API_SECRET = "voice-backend-test-secret-0123456789abcdef"  # >= 32 bytes, as LiveKit wants


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveKitServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def provider_config(self, **extra: object) -> dict[str, object]:
        return {"url": self.url, "api_key": API_KEY, "api_secret": API_SECRET, **extra}

    def log_tail(self, lines: int = 40) -> str:
        path = Path(self.workdir.name) / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()


def start(webhook_url: str, timeout_s: float = 30.0) -> LiveKitServer:
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run scripts/setup.sh (it builds livekit-server)")
    workdir = tempfile.TemporaryDirectory(prefix="livekit-")
    port = _free_port()
    config = f"""
port: {port}
bind_addresses: ["127.0.0.1"]
rtc:
  tcp_port: {_free_port()}
  udp_port: {_free_port(socket.SOCK_DGRAM)}
  use_external_ip: false
  node_ip: 127.0.0.1
keys:
  {API_KEY}: {API_SECRET}
logging:
  level: warn
webhook:
  api_key: {API_KEY}
  urls: ["{webhook_url}"]
"""
    path = Path(workdir.name) / "livekit.yaml"
    path.write_text(config)
    log = open(Path(workdir.name) / "server.log", "wb")  # noqa: SIM115 (owned by the process)
    process = subprocess.Popen([str(BINARY), "--config", str(path)], stdout=log, stderr=log)
    server = LiveKitServer(process, port, workdir)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"livekit-server exited ({process.returncode}):\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("livekit-server did not answer in time")
        time.sleep(0.2)
