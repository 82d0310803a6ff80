"""ClickHouse's own HTTP server out of chDB, for deploy/clickhouse.sh (not meant to be run by hand).

    python3 server.py npm  <libchdb.so> <data dir>    # ctypes on chdb_query_cmdline of @chdb/lib-linux-x64-gnu
    python3 server.py pypi <data dir>                 # chdb._chdb.query of PyPI chdb-core (run with the venv's python)

Both read config.xml (listen_host, http_port, logger) from the working directory, which the
script sets. `SYSTEM START LISTEN HTTP` opens the listener; the HTTP handlers only serve while a
query of the engine's own session runs, so the same call then runs a query that sleeps one
second per row for ~31,000 years (no CPU: sleepEachRow blocks the thread; count() keeps no
rows). The output format given here becomes the default of HTTP queries without FORMAT, so it
is a full server's default, TabSeparated. The process ends
when that query ends, is killed, or fails; deploy/clickhouse.sh watches /ping and the pid.
Only the Python standard library is used on the npm path.
"""
import sys

# One multi-statement call: a second call would initialise a second engine in the same process
# ("EventNotifier is initialized twice"), so listening and the keep-alive must share one.
QUERY = (
    "SYSTEM START LISTEN HTTP; "
    "SELECT count() FROM numbers(1000000000000) WHERE sleepEachRow(1) = 0 "
    "SETTINGS max_block_size = 1, function_sleep_max_microseconds_per_block = 0, max_execution_time = 0"
)


def main(argv):
    if len(argv) == 4 and argv[1] == "npm":
        import ctypes

        lib = ctypes.CDLL(argv[2])
        args = [b"clickhouse", b"--multiquery", b"--path=" + argv[3].encode(), b"--output-format=TabSeparated", b"--log-level=warning",
                b"--query=" + QUERY.encode()]
        lib.chdb_query_cmdline.restype = ctypes.c_void_p
        lib.chdb_query_cmdline(len(args), (ctypes.c_char_p * len(args))(*args))
    elif len(argv) == 3 and argv[1] == "pypi":
        import chdb._chdb as engine

        engine.query(QUERY, "TabSeparated", path=argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    sys.stderr.write("clickhouse server: the keep-alive query ended; exiting\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
