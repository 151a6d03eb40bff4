#!/usr/bin/env bash
# What `tlsock tunnel` holds for one connection whose plaintext side does not read while the TLS
# side sends tiny records, for TLS termination (the TLS client sends to a plaintext target) and
# TLS origination (the TLS target sends to a plaintext client). The peers are
# tunnel_mem_peer.py: the sender fills the path to the receiver until the tunnel queues what it
# reads (far less than its 256 KiB limit), then sends 3000 records of 1 byte, one by one.
# Every write the tunnel makes holds a whole 64 KiB buffer until it completes, so backpressure
# must count those buffers and not the payload: counting bytes, the tunnel read every record and
# held about 3000 buffers (some 180 MiB of VmData); counting buffers it stops reading after a
# few. Asserted: the tunnel's VmData grew by less than LIMIT_KIB meanwhile (deterministic: the
# address space malloc() took, whether or not the pages were touched), the path stayed stalled
# (what reached the kernel towards the receiver grew by less than the records sent, else the
# test proves nothing), and the tunnel goes on and stops cleanly.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN
[ -r /proc/self/status ] && [ -r /proc/net/tcp ] || skip "no /proc (Linux only)"

PEER="$(dirname "$0")/tunnel_mem_peer.py"
make_certs "$WORK/certs" localhost,127.0.0.1
CERTS=("$WORK/certs/ca.pem" "$WORK/certs/cert.pem" "$WORK/certs/key.pem")
TINY=3000
LIMIT_KIB=$((16 * 1024)) # the buffers of one stalled direction: 320 KiB, and spares

# run_mode MODE TUNNEL_ARGS...: one connection through a tunnel of its own.
run_mode() {
    local mode=$1
    shift
    local line tunnel_pid pid
    start_peers_coproc "$mode" 60 "$PYTHON3_BIN" "$PEER" "$mode" "${CERTS[@]}"
    start_tlsock "tunnel_$mode" tunnel --accept 127.0.0.1:0 \
        --connect "127.0.0.1:${PEERS_FIRST##*:}" "$@"
    tunnel_pid=$BG_PID
    pid=$(bg_child "$tunnel_pid")
    [ -n "$pid" ] || fail "$mode: no tunnel process"
    echo "$PORT $pid" >&"$TO_PEERS"
    read -r -t 50 line <&"$FROM_PEERS" ||
        fail "$mode: no result from the peers: $(cat "$WORK/peers_$mode.err")"
    end_peers "$mode"
    echo "$mode: $line"

    local tiny kernel grew rss
    tiny=$(field tiny "$line")
    kernel=$(field kernel "$line")
    grew=$(($(field data_after_kib "$line") - $(field data_kib "$line")))
    rss=$(($(field rss_after_kib "$line") - $(field rss_kib "$line")))
    [ "$tiny" -ge 100 ] || fail "$mode: the sender could send only $tiny records: $line"
    # Else the tunnel wrote the records on at once and the test proves nothing.
    [ "$kernel" -lt "$tiny" ] || fail "$mode: the path to the receiver did not stay stalled: $line"
    [ "$grew" -lt "$LIMIT_KIB" ] ||
        fail "$mode: the tunnel's VmData grew by $grew KiB for $tiny records of 1 byte: $line"
    pass "$mode: $tiny records of 1 byte to a side that does not read: VmData +$grew KiB," \
        "VmRSS +$rss KiB (limit $LIMIT_KIB KiB)"
    running "$tunnel_pid" || fail "$mode: the tunnel died"
    stop_bg "$tunnel_pid" 10
    [ "$STOPPED_STATUS" = 0 ] || fail "$mode: the tunnel exited $STOPPED_STATUS after SIGTERM"
}

run_mode termination --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem"
run_mode origination --tls-connect --ca "$WORK/certs/ca.pem"
