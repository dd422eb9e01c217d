# verify-docker: a no-new-privileges container of IMAGE running the command (the arguments)
# must finish within TIMEOUT seconds. `docker run` ignores SIGTERM while runc init hangs, so the
# client gets SIGKILL, and the container it leaves "Created" is removed by name.
name="$VERIFY_PREFIX$RUN_ID-$$"
cidfile=$STATE_DIR/$name.cid
rm -f "$cidfile"
timeout -s KILL "$TIMEOUT" docker run --rm --cidfile "$cidfile" --network none \
    --security-opt no-new-privileges --name "$name" -- "$IMAGE" "$@"
rc=$?
if [ "$rc" -ne 0 ]; then
    # A hung container's runtime processes (runc create, its runc init) block even `docker
    # inspect`: find them by the container id docker wrote to the cidfile, kill them (never
    # the shim or the daemons), then remove the container.
    id=$(cat "$cidfile" 2>/dev/null)
    if [ -n "$id" ]; then
        # shellcheck disable=SC2013 # file names of /proc: no blanks in them
        for pid in $(grep -l -a -F "$id" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
            case "$(cat "/proc/$pid/comm" 2>/dev/null)" in containerd-shim*|dockerd|containerd) ;;
            *) pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null;; esac
        done
    fi
    timeout -s KILL 30 docker rm -f "$name" >/dev/null 2>&1
    rm -f "$cidfile"
    echo "verify=failed rc=$rc"; exit "$rc"
fi
rm -f "$cidfile"
echo verify=ok
