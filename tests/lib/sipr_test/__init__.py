"""The integration, cluster and end-to-end tests' library: real redis-server, the real daemons,
loopback UDP, SIPp. Everything talks to 127.0.0.1 only, is bounded in time, and stops what it
started by PID (never by name). The pytest fixtures built on it are in tests/conftest.py.

    base           build_dir(), binary(), time_scale()/scaled() (3x for a sanitizer build),
                   free_udp_port()/free_tcp_port()/free_port(), wait_until()
    processes      Daemon, ServiceDaemon (sip-redirectd/sip-registrard on free ports), Kamailio,
                   run_program(), startup_refused()
    redis_servers  RedisServer (private redis-server; .client is a python3-redis client),
                   replica, RedisSentinel, Redis Cluster helpers
    sip            SipUdp (RFC 3261 client transactions), Response, parse_response(),
                   transact_many(), transact_bulk()
    sipp           run_sipp(), SippProcess
    metrics        scrape_metrics(), metric_value()
    bindings       location_key(), unpack_binding() (include/sipr/location/binding.h)
"""
