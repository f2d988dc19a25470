# Helpers the scripts share; source it: `. "$(dirname "$0")/lib.sh"`.
# Each is written once here: picking a free loopback port and waiting
# (bounded) until a server started in the background accepts TCP on it.

# free_port: prints a TCP port that is free on 127.0.0.1 now (the kernel
# picks it; the caller binds it right after).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# is_running PID: true while PID is alive and not a zombie.
is_running() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(sed -E 's/.*\) ([A-Z]).*/\1/' "/proc/$1/stat" 2>/dev/null || echo '?')
    [ "$state" != Z ]
}

# wait_for_port PORT PID [TIMEOUT_S]: waits until 127.0.0.1:PORT accepts a
# TCP connection, checking every 0.1 s. Fails (status 1, one line on stderr)
# when PID exits first or after TIMEOUT_S seconds (default 30).
wait_for_port() {
    local port=$1 pid=$2 timeout=${3:-30}
    local deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! is_running "$pid"; then
            echo "process $pid exited before listening on 127.0.0.1:$port" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing accepted connections on 127.0.0.1:$port within $timeout s" >&2
    return 1
}

# apt_install PACKAGE...: installs Debian packages (through sudo when not
# root), for the tools a fresh machine lacks.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
