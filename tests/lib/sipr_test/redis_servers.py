"""Private redis-server processes (a single node, a replica, Sentinels, a Redis Cluster) on free
127.0.0.1 ports, and python3-redis clients to them. Every node is a RedisServer (or a subclass): a
private directory, no persistence, stopped by its PID."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import redis

from .base import LOCALHOST, _free_port, free_tcp_port, scaled, tail, wait_until
from .processes import CHILDREN, _stop_pid


def connect(port: int, auth: Sequence[str] = (), timeout: float = 5.0) -> redis.Redis:
    """A python3-redis client to 127.0.0.1:`port`, replies decoded as UTF-8 (surrogateescape keeps
    any byte). `auth`: (password,) or (user, password); empty sends no AUTH. It reconnects on its
    own after a restart of the server."""
    user, password = (None, auth[0]) if len(auth) == 1 else (tuple(auth) or (None, None))
    return redis.Redis(host=LOCALHOST, port=port, username=user, password=password,
                       socket_timeout=timeout, socket_connect_timeout=timeout,
                       decode_responses=True, encoding_errors="surrogateescape")


def time_ms(client: redis.Redis) -> int:
    """The server's clock (TIME) in milliseconds."""
    s, us = client.time()
    return int(s) * 1000 + int(us) // 1000


class RedisServer:
    """A private redis-server on a free 127.0.0.1 port in a temporary directory, no persistence.
    stop() and start() again keep the port (for outage tests)."""

    kind = "redis-server"  # for messages

    def __init__(self, port: int | None = None, exe: str = "redis-server",
                 extra_args: Sequence[str] = (), password: str | None = None):
        """`password`: started with --requirepass; `.client` AUTHs with it."""
        self.port = port or free_tcp_port()
        self.exe = shutil.which(exe) or exe
        self.extra_args = list(extra_args)
        self.password = password
        if password is not None:
            self.extra_args += ["--requirepass", password]
        self.auth: tuple[str, ...] = (password,) if password is not None else ()
        self.dir = Path(tempfile.mkdtemp(prefix="sipr-redis-"))
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None
        self._client: redis.Redis | None = None
        CHILDREN.append(self)

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}"

    def _command_line(self) -> list[str]:
        return [self.exe, "--port", str(self.port), "--bind", LOCALHOST, "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(self.log_path), *self.extra_args]

    def start(self, timeout: float = 10.0) -> "RedisServer":
        assert self.proc is None or self.proc.poll() is not None, f"{self.kind} already running"
        self.proc = subprocess.Popen(self._command_line(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} exited with {self.proc.returncode} at start: "
                                  f"{self.log_tail()}")
            try:
                with connect(self.port, self.auth, timeout=1.0) as c:
                    if c.ping():
                        return self
            except (OSError, redis.RedisError):
                time.sleep(0.02)
        self.stop(check_status=False)
        raise AssertionError(f"{self.kind} on port {self.port} did not answer PING within "
                          f"{timeout:.0f}s: {self.log_tail()}")

    def stop(self, timeout: float = 10.0, check_status: bool = True) -> int:
        if self._client is not None:
            self._client.close()
        if self.proc is None:
            return 0
        rc, killed = _stop_pid(self.proc, timeout)
        self.proc = None  # stopped: a second stop() (a context's exit) has nothing to judge
        if check_status:
            assert not killed, f"{self.kind} ignored SIGTERM for {timeout:.0f}s and was killed"
            assert rc == 0, f"{self.kind} exited with {rc}: {self.log_tail()}"
        return rc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 10) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    @property
    def client(self) -> redis.Redis:
        """A shared python3-redis client (reconnects after a restart)."""
        if self._client is None:
            self._client = connect(self.port, self.auth)
        return self._client

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.stop(check_status=exc_type is None)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Redis topologies (added for tests/cluster/test_redis_topologies.py): a replica, Sentinels, a
# Redis Cluster. Every node is a RedisServer (or a subclass): 127.0.0.1, a free port, a private
# directory, stopped by its PID.

def redis_info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO `section` as python3-redis parses it. Asked again once on a new connection when the
    old one was closed (a Sentinel reconfiguring a node closes its clients' connections)."""
    try:
        return client.info(section)
    except redis.ConnectionError:
        return client.info(section)


# Redis 7 waits repl-diskless-sync-delay (5 s) for more replicas before a full sync: too long for a
# test. Give it to every node that may serve a sync (a primary, and a replica that may be promoted).
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def primary_server() -> RedisServer:
    """A RedisServer (not started) that serves a replica's full sync at once."""
    return RedisServer(extra_args=NO_SYNC_DELAY)


def replica_server(primary: RedisServer) -> RedisServer:
    """A RedisServer (not started) that replicates `primary` (--replicaof); after start(),
    wait_replica_synced() waits for its copy."""
    return RedisServer(extra_args=[*NO_SYNC_DELAY, "--replicaof", LOCALHOST, str(primary.port)])


def wait_replica_synced(primary: RedisServer, replica: RedisServer, timeout: float = 10.0) -> None:
    """Waits until `replica`'s link to `primary` is up and it has applied every write `primary`
    had made when this was called (its replication offset reached the primary's)."""
    want = int(redis_info(primary.client, "replication")["master_repl_offset"])

    def synced() -> bool:
        try:
            info = redis_info(replica.client, "replication")
        except (OSError, redis.RedisError):
            return False  # a Sentinel reconfiguring it closes every normal client's connection
        return (info.get("master_link_status") == "up"
                and int(info.get("slave_repl_offset", -1)) >= want)
    wait_until(synced, timeout, what=f"replica :{replica.port} to sync with :{primary.port} "
                                     f"(offset {want})")


class RedisSentinel(RedisServer):
    """`redis-server <conf> --sentinel` on a free port, monitoring the master at 127.0.0.1:
    `master_port` under `name` with `quorum`; its config file (which Sentinel rewrites) lives in
    its private directory. The Sentinels of one master find each other through the master."""

    def __init__(self, master_port: int, name: str = "mymaster", quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000):
        super().__init__()
        self.master_name = name
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", f"bind {LOCALHOST}", "daemonize no", f"dir {self.dir}",
            f"logfile {self.log_path}", "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {LOCALHOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}", ""]))

    kind = "redis sentinel"

    def _command_line(self) -> list[str]:
        return [self.exe, str(self.conf), "--sentinel"]

    def master_addr(self) -> tuple[str, int] | None:
        """SENTINEL get-master-addr-by-name: the master it believes in, or None."""
        r = self.client.sentinel_get_master_addr_by_name(self.master_name)
        return None if not r else (r[0], int(r[1]))

    def known(self, what: str) -> list[dict[str, str]]:
        """SENTINEL replicas|sentinels <name>: one dict per instance it knows."""
        reply = self.client.execute_command("SENTINEL", what, self.master_name)
        return [{x[i]: x[i + 1] for i in range(0, len(x) - 1, 2)} for x in reply]


def sentinel_url(sentinels: Sequence[RedisSentinel], name: str = "mymaster") -> str:
    """sentinel://127.0.0.1:S1,127.0.0.1:S2,.../name"""
    return "sentinel://" + ",".join(f"{LOCALHOST}:{s.port}" for s in sentinels) + f"/{name}"


def wait_sentinels_ready(sentinels: Sequence[RedisSentinel], replica_ports: Sequence[int],
                         timeout: float = 20.0) -> None:
    """Waits until every Sentinel knows every replica (linked to its master: a failover can pick
    it) and every other Sentinel."""
    want = {str(p) for p in replica_ports}

    def ready() -> bool:
        for s in sentinels:
            replicas = {r["port"] for r in s.known("replicas")
                        if r.get("master-link-status") == "ok"
                        and "disconnected" not in r.get("flags", "")
                        and "s_down" not in r.get("flags", "")}
            if not want <= replicas or len(s.known("sentinels")) < len(sentinels) - 1:
                return False
        return True
    wait_until(ready, timeout, interval=0.1,
               what=f"each of {len(sentinels)} sentinels to know replicas {sorted(want)} and "
                    f"the other sentinels")


def cluster_node(node_timeout_ms: int = 2000) -> RedisServer:
    """A RedisServer (not started) with --cluster-enabled yes, its nodes-PORT.conf in its private
    directory, on a port whose cluster bus port (port + 10000) is free too."""
    node = RedisServer(port=_free_port([socket.SOCK_STREAM], spacing=(0, 10000)))
    node.extra_args += ["--cluster-enabled", "yes",
                        "--cluster-config-file", str(node.dir / f"nodes-{node.port}.conf"),
                        "--cluster-node-timeout", str(node_timeout_ms)]
    return node


def cluster_url(nodes: Sequence[RedisServer]) -> str:
    """cluster://127.0.0.1:C1,127.0.0.1:C2,..."""
    return "cluster://" + ",".join(f"{LOCALHOST}:{n.port}" for n in nodes)


def redis_cli(args: Sequence[str], timeout: float = 60.0) -> str:
    """Runs redis-cli with `args` to completion (killed after `timeout` scaled seconds, which
    fails); returns its stdout; a non-zero exit fails with the tail of its output."""
    exe = shutil.which("redis-cli")
    assert exe is not None, "redis-cli is not installed (Debian package redis-tools)"
    try:
        p = subprocess.run([exe, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=scaled(timeout))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"redis-cli {' '.join(args)} did not finish within "
                          f"{scaled(timeout):.0f}s: {tail(str(e.stdout or ''), 5)}")
    assert p.returncode == 0, (f"redis-cli {' '.join(args)} exited {p.returncode}:\n"
                             f"{tail(p.stdout + p.stderr, 10)}")
    return p.stdout


def create_cluster(nodes: Sequence[RedisServer], timeout: float = 30.0, replicas: int = 0) -> None:
    """redis-cli --cluster create over the started `nodes` (`replicas` replicas per master; the
    slots split evenly over the masters), then waits until every node says cluster_state:ok and
    knows all the others."""
    redis_cli(["--cluster", "create", *[f"{LOCALHOST}:{n.port}" for n in nodes],
               "--cluster-replicas", str(replicas), "--cluster-yes"], timeout)

    def ok() -> bool:
        for n in nodes:
            info = n.client.execute_command("CLUSTER INFO")
            if info.get("cluster_state") != "ok" or \
                    int(info.get("cluster_known_nodes", 0)) != len(nodes):
                return False
        return True
    wait_until(ok, timeout, interval=0.1, what="cluster_state:ok on every node")


def cluster_slot_owners(client: redis.Redis) -> list[int]:
    """CLUSTER SLOTS as seen by `client`'s node: the master's port of each of the 16384 slots
    (0 where none)."""
    owners = [0] * 16384
    for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
        for slot in range(start, end + 1):
            owners[slot] = int(master[1])
    return owners


