"""The live server of the UI tests, as the fixtures hand it to them."""

from __future__ import annotations

from pathlib import Path

from harness import Deployment, Server


class Live:
    """The running server, its deployments, and where the examples count and mail."""

    def __init__(self, server: Server, deployments: dict[str, Deployment], count_dir: Path):
        self.server = server
        self.deployments = deployments
        self.count_dir = count_dir
        self.admin = server.admin_url
        self.ingress = server.ingress_url

    def ui(self, path: str = "/ui/") -> str:
        return f"{self.admin}{path}"
