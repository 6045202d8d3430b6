"""podman for tests/container: a private image store and configuration in a cache directory
outside the source tree, a Debian 12 base image bootstrapped there with mmdebstrap (Debian's
packages, no registry), image builds, and containers stopped and removed by name.

The cache directory is $SIPR_CONTAINER_CACHE, default /var/tmp/sipr-container:
    containers.conf, storage.conf   what every podman (and podman-compose) run here reads
    storage/                        the image store: the base image and the build cache
    debian-bookworm.tar             the bootstrapped base (kept: about 80 MB, one to four minutes
                                    to make); delete the directory to start afresh
Run state (podman's runroot) is in /run/ under the cache directory's name (/run/sipr-container),
so a reboot clears it.

The configuration is what podman needs on this machine (cgroups v1 hybrid): runc (crun fails),
no default ulimits (setrlimit fails), netavark (with aardvark-dns, so compose services find each
other by name).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .base import tail

CACHE = Path(os.environ.get("SIPR_CONTAINER_CACHE", "/var/tmp/sipr-container"))
BASE_IMAGE = "localhost/debian:bookworm"
BASE_TAR = CACHE / "debian-bookworm.tar"

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
"""

# A minbase Debian 12 with the paths debian:12-slim leaves out (documentation, manual pages,
# translations), merged /usr without the usrmerge package: about the size of debian:12-slim.
MMDEBSTRAP = ["mmdebstrap", "--variant=minbase",
              "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
              "--dpkgopt=path-exclude=/usr/share/man/*",
              "--dpkgopt=path-exclude=/usr/share/locale/*",
              "--dpkgopt=path-include=/usr/share/locale/locale.alias",
              "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-include=/usr/share/doc/*/copyright",
              "--dpkgopt=path-exclude=/usr/share/info/*",
              "bookworm"]


class PodmanError(AssertionError):
    pass


class Podman:
    """podman with the cache directory's configuration and store."""

    def __init__(self, cache: Path = CACHE):
        self.cache = cache
        self.env = dict(os.environ, CONTAINERS_CONF=str(cache / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(cache / "storage.conf"))

    def configure(self) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        (self.cache / "containers.conf").write_text(CONTAINERS_CONF)
        (self.cache / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.cache / "storage"}"\n'
            f'runroot = "{Path("/run") / self.cache.name}"\n')

    def run(self, args: Sequence[str], timeout: float = 120, check: bool = True,
            program: str = "podman", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        """Runs `podman args` (or another `program` that runs podman, such as podman-compose) to
        completion, with `env` added to the environment; with `check`, a non-zero exit fails
        with the tail of its output."""
        try:
            p = subprocess.run([program, *args], env={**self.env, **(env or {})},
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"") + (e.stderr or b"")
            text = out.decode(errors="replace") if isinstance(out, bytes) else out
            raise PodmanError(f"{program} {' '.join(args)} did not finish within {timeout:.0f}s; "
                              f"output:\n{tail(text, 30)}")
        if check and p.returncode != 0:
            raise PodmanError(f"{program} {' '.join(args)}: exit status {p.returncode}; output:\n"
                              f"{tail(p.stdout + p.stderr, 30)}")
        return p

    def exists(self, kind: str, name: str) -> bool:
        """Whether `podman KIND exists NAME` (kind: image, container, network, pod)."""
        return self.run([kind, "exists", name], check=False).returncode == 0

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Excludes other test runs on the same cache while bootstrapping the base."""
        with open(self.cache / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def build(self, tag: str, containerfile: Path, context: Path, *, target: str | None = None,
              build_args: dict[str, str] | None = None, timeout: float = 1800) -> float:
        """`podman build` with the host's network (Debian's mirrors for apt-get); returns its
        duration in seconds."""
        args = ["build", "--network", "host", "-f", str(containerfile), "-t", tag]
        if target:
            args += ["--target", target]
        for k, v in (build_args or {}).items():
            args += ["--build-arg", f"{k}={v}"]
        start = time.monotonic()
        self.run([*args, str(context)], timeout=timeout)
        return time.monotonic() - start

    def remove_container(self, name: str) -> None:
        """Stops (at once) and removes a container, if it exists."""
        if self.exists("container", name):
            self.run(["rm", "--force", "--time", "0", name], check=False, timeout=60)

    def untag(self, tag: str) -> None:
        """Removes the name `tag` (when it exists); the image it named stays in the store, as the
        build cache of the next run, until prune_cache() finds it old."""
        if self.exists("image", tag):
            self.run(["untag", tag, tag], check=False, timeout=60)

    def prune_cache(self, days: int = 7) -> None:
        """Removes the unnamed images (build cache) older than `days`."""
        self.run(["image", "prune", "--force", "--filter", f"until={days * 24}h"], check=False,
                 timeout=300)

    def inspect(self, name: str, fmt: str) -> str:
        return self.run(["inspect", "--format", fmt, name]).stdout.strip()


def unavailable() -> str | None:
    """Why podman cannot run containers here (then tests/container skips), or None."""
    missing = [p for p in ("podman", "runc", "mmdebstrap", "podman-compose", "netavark")
               if shutil.which(p) is None and not Path(f"/usr/lib/podman/{p}").exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian 12 packages; tools/packages.sh)"
    if os.geteuid() != 0:
        return "not root: this suite runs podman rootful (rootless needs subordinate uids)"
    return None


def ensure_base(podman: Podman) -> str | None:
    """Makes BASE_IMAGE exist in the store (bootstrapping and importing it when missing). Returns
    why it cannot (no Debian mirror reachable, podman cannot run a container), or None."""
    with podman.lock():
        if not podman.exists("image", BASE_IMAGE):
            if not BASE_TAR.exists():
                partial = BASE_TAR.with_suffix(".partial.tar")
                try:
                    p = subprocess.run([*MMDEBSTRAP, str(partial)], stdin=subprocess.DEVNULL,
                                       capture_output=True, text=True, timeout=900)
                except subprocess.TimeoutExpired:
                    partial.unlink(missing_ok=True)
                    return "mmdebstrap did not finish within 900 s (no Debian mirror?)"
                if p.returncode != 0:
                    partial.unlink(missing_ok=True)
                    return (f"mmdebstrap could not bootstrap Debian 12 (no Debian mirror?):\n"
                            f"{tail(p.stderr, 10)}")
                partial.rename(BASE_TAR)
            podman.run(["import", "--quiet", str(BASE_TAR), BASE_IMAGE], timeout=300)
    probe = podman.run(["run", "--rm", "--network", "host", BASE_IMAGE, "true"], check=False,
                       timeout=120)
    if probe.returncode != 0:
        return f"podman cannot run a container here:\n{tail(probe.stdout + probe.stderr, 10)}"
    return None
