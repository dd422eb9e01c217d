# Functions the host-side scripts share. Not run by itself: orchestrator/host/scripts.py puts
# each function a script calls (and those it calls) into that script's header.

# `copy_to SRC DEST`: a copy (`cp -p`, synced) to a new name made by mktemp beside DEST, then a
# rename over DEST: a link planted at DEST, or at a fixed temporary name, is replaced, never
# written through.
copy_to() {
    t=$(mktemp "$2.runc-rollout.XXXXXX") || return 1
    cp -p "$1" "$t" && sync "$t" && mv -f "$t" "$2" && return 0
    rm -f "$t"
    return 1
}

# `untrusted FILE [ROOT]`: a file only root could have placed or changed is one where the file
# (after links) and every directory above it, and above the name it was found by, is owned by
# root and not group or world writable. Prints why not, if not (status 0); status 1 if it is
# root's alone. ROOT (/proc/PID/root) judges FILE in another mount namespace, as a process there
# sees it. Nothing is ever executed, and no sysctl file changed, unless this says nothing.
untrusted() {
    r=${2:-}
    if [ -z "$r" ]; then
        f=$(readlink -f "$1" 2>/dev/null) && [ -f "$f" ] || { echo "not a regular file"; return 0; }
        dir=$(readlink -f "${1%/*}/" 2>/dev/null) || { echo "its directory is unreadable"; return 0; }
    else
        f=$(inroot "$r" "$1") && [ -f "$r$f" ] || { echo "not a regular file"; return 0; }
        dir=$(inroot "$r" "${1%/*}") || { echo "its directory is unreadable"; return 0; }
    fi
    for top in "$f" "$dir"; do
        while :; do
            # shellcheck disable=SC2046 # stat's two fields, split on purpose
            set -- $(stat -L -c '%u %a' "$r$top" 2>/dev/null)
            [ "${1:-}" = 0 ] || { echo "$top is not owned by root"; return 0; }
            case ${2:-7} in *[2367]?|*[2367]) echo "$top is writable by others"; return 0 ;; esac
            [ "$top" != / ] || break
            top=${top%/*} && top=${top:-/}
        done
    done
    return 1
}

# `inroot ROOT PATH`: PATH as a process whose root is ROOT (/proc/PID/root) sees it, every
# symlink resolved there (readlink -f would resolve an absolute link in this namespace instead).
inroot() {
    root=$1 rest=${2#/} out='' n=0
    while [ -n "$rest" ]; do
        c=${rest%%/*}
        case $rest in */*) rest=${rest#*/} ;; *) rest='' ;; esac
        case $c in '' | .) continue ;; ..) out=${out%/*}; continue ;; esac
        if [ -L "$root$out/$c" ]; then
            n=$((n + 1))
            [ $n -le 40 ] || return 1
            l=$(readlink "$root$out/$c") || return 1
            case $l in /*) out='' ;; esac
            rest=${l#/}${rest:+/$rest}
        else
            out=$out/$c
        fi
    done
    printf '%s\n' "${out:-/}"
}

# `refuse_untrusted N ARG...`: sysctl files are changed only where only root can. Every N-th
# argument (the first, then the N+1-th, ...) is a file; the first that is a link or `untrusted`
# ends the script (exit 1, `refused: WHY`) before anything changed. A file gone since is written
# anew by a rename, which replaces whatever is at its name.
refuse_untrusted() {
    n=$1
    shift
    while [ $# -ge "$n" ]; do
        if [ -L "$1" ]; then
            printf 'refused: %s is a symbolic link\n' "$1"
            exit 1
        elif [ -e "$1" ] && why=$(untrusted "$1"); then
            printf 'refused: %s\n' "$why"
            exit 1
        fi
        shift "$n"
    done
}

# `sha_of FILE`: its sha256 in hex ('' if unreadable).
sha_of() {
    sha256sum "$1" 2>/dev/null | cut -d' ' -f1
}

# `runc_comm COMM`: whether COMM is the comm of a runc before its init renames itself
# (runcinfo.RUNC_COMMS: globs, matched with file name globbing off).
runc_comm() {
    case $- in *f*) noglob=1 ;; *) noglob= ;; esac
    set -f
    m=1
    for g in $RUNC_COMMS; do
        # shellcheck disable=SC2254 # RUNC_COMMS are globs, matched as such
        case $1 in $g) m=0 ;; esac
    done
    [ -n "$noglob" ] || set +f
    return "$m"
}

# `pipe_wchan WCHAN`: whether a process asleep in WCHAN is blocked writing a pipe (runcinfo's
# PIPE_WCHANS: pipe_write, anon_pipe_write from Linux 6.x, pipe_wait before 5.8). What a stuck
# runc init is, for the probe, the pipe holder's measurement and unstick alike.
pipe_wchan() {
    for w in $PIPE_WCHANS; do
        [ "$1" = "$w" ] && return 0
    done
    return 1
}
