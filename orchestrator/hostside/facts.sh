# The facts script: reads, never changes. orchestrator/host/facts.py renders it (NONCE delimits
# its sections, NVIDIA_CONFIG is the NVIDIA runtime's config file) and parses what it prints.
export LC_ALL=C
PATH=$SYSTEMD_PATH:$PATH
sec() { printf '\n@@%s@@ %s\n' "$NONCE" "$*"; }
kv() { printf '%s=%s\n' "$1" "$2"; }
printf 'runc-rollout-facts 1 %s\n' "$NONCE"

self_ns=$(readlink /proc/$$/ns/mnt 2>/dev/null)
init_ns=$(readlink /proc/1/ns/mnt 2>/dev/null)
self_uts=$(readlink /proc/$$/ns/uts 2>/dev/null)
self_pidns=$(readlink /proc/$$/ns/pid 2>/dev/null)
# A process is this host's when the session runs in the machine's initial mount namespace, or
# it runs in the session's mount namespace, or in its UTS namespace (the hostname's: daemons in
# a mount namespace of their own keep it; containers get their own).
ours() {
    [ "$self_ns" = "$init_ns" ] && return 0
    [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$self_ns" ] && return 0
    [ "$(readlink "/proc/$1/ns/uts" 2>/dev/null)" = "$self_uts" ]
}
# A daemon in another mount namespace is the host's (a snap's, a systemd unit's with
# ProtectSystem= or PrivateTmp=) when it shares the session's UTS and PID namespaces and no
# container runtime is among its ancestors; else it runs inside a container.
home() {
    [ "$(readlink "/proc/$1/ns/uts" 2>/dev/null)" = "$self_uts" ] || return 1
    [ "$(readlink "/proc/$1/ns/pid" 2>/dev/null)" = "$self_pidns" ] || return 1
    a=$1 n=0
    while [ "$a" -gt 1 ] 2>/dev/null && [ $n -lt 64 ]; do
        c=
        { read -r c < "/proc/$a/comm"; } 2>/dev/null
        case $c in containerd-shim*|runc|runc:*|conmon|crun) return 1 ;; esac
        s=''
        { read -r s < "/proc/$a/stat"; } 2>/dev/null
        set -f
        # shellcheck disable=SC2086 # stat's fields after the command name, split on purpose
        set -- ${s##*") "}
        set +f
        a=${2:-0} n=$((n + 1))
    done
    return 0
}
# A daemon is the host's own when it runs in this session's mount namespace (not inside a
# container: those are skipped) as root (another user's is reported: prints why).
foreign() {
    uids=
    while read -r k a b _; do [ "$k" = Uid: ] && uids="$a $b"; done < "/proc/$1/status"
    [ "$uids" = "0 0" ] || { echo "owner uid ${uids% *}, not root"; return 0; }
    return 1
}
# untrusted FILE [ROOT] and inroot ROOT PATH: functions.sh

sec host
kv arch "$(uname -m)"
kv kernel "$(uname -r)"
kv uid "$(id -u)"
kv now "$(date +%s)"
kv clk_tck "$(getconf CLK_TCK 2>/dev/null || echo 100)"
while read -r k v; do [ "$k" = btime ] && kv btime "$v"; done < /proc/stat

dpid='' cpid='' dpath='' cpath='' droot='' croot=''
for d in /proc/[0-9]*; do
    p=${d#/proc/}
    comm=
    { read -r comm < "$d/comm"; } 2>/dev/null
    case $comm in
        dockerd|containerd) kind=$comm ;;
        *) runc_comm "$comm" || continue; kind=runc ;;  # runcinfo.RUNC_COMMS
    esac
    stat=
    { read -r stat < "$d/stat"; } 2>/dev/null
    [ -n "$stat" ] || continue
    set -f
    # shellcheck disable=SC2086 # stat's fields after the command name, split on purpose
    set -- ${stat##*") "}
    set +f
    R='' ns=''
    if [ "$kind" = runc ]; then
        ours "$p" || ours "$2" || continue
    else
        ns=$(readlink "$d/ns/mnt" 2>/dev/null)
        if [ "$ns" != "$self_ns" ]; then home "$p" || continue; R=$d/root; fi
        if why=$(foreign "$p"); then sec foreign "$p"; kv comm "$comm"; kv why "$why"; continue; fi
    fi
    sec proc "$p"
    kv comm "$comm"
    kv stat "$stat"
    [ -z "$R" ] || { kv mntns "$ns"; kv root "$R"; }
    cmdline=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
    kv cmdline "${cmdline% }"
    if [ "$kind" = runc ]; then
        wchan=
        { read -r wchan < "$d/wchan"; } 2>/dev/null
        kv wchan "$wchan"
        continue
    fi
    path=$(tr '\0' '\n' < "$d/environ" 2>/dev/null | sed -n 's/^PATH=//p' | head -n 1)
    exe=$(readlink "$d/exe" 2>/dev/null)
    kv exe "$exe"
    kv path "$path"
    # Its version from the file it runs, only if that file is still the one running (same inode)
    # and only root could have put it there.
    if ! [ "$d/exe" -ef "$R$exe" ]; then kv untrusted "$exe is no longer the file it runs"
    elif why=$(untrusted "$exe" "$R"); then kv untrusted "$why"
    else kv version "$(timeout -s KILL 10 "$R$exe" --version 2>/dev/null | head -n 1)"
    fi
    if [ "$kind" = dockerd ] && { [ -z "$dpid" ] || [ "$p" -lt "$dpid" ]; }; then
        dpid=$p dpath=$path droot=$R
    elif [ "$kind" = containerd ] && { [ -z "$cpid" ] || [ "$p" -lt "$cpid" ]; }; then
        cpid=$p cpath=$path croot=$R
    fi
done

# The value of the last of options $3... on the command line of PID $1, else $2.
argval() {
    pid=$1 val=$2
    shift 2
    [ -n "$pid" ] || { printf '%s\n' "$val"; return; }
    tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | {
        want=
        while IFS= read -r a; do
            if [ -n "$want" ]; then val=$a want=; continue; fi
            for o in "$@"; do
                case $a in "$o") want=1 ;; "$o"=*) val=${a#"$o"=} ;; esac
            done
        done
        printf '%s\n' "$val"
    }
}
# Files are read where the daemon reading them sees them: through /proc/PID/root when it runs in
# a mount namespace of its own (paths are printed as it sees them). The runtime's, R: the
# namespace the shim and runc run in, containerd's (dockerd's without one).
[ -n "$cpid" ] && R=$croot || R=$droot
dcfg=$(argval "$dpid" /etc/docker/daemon.json --config-file)
ccfg=$(argval "$cpid" /etc/containerd/config.toml --config -c)
if [ -f "$droot$dcfg" ]; then sec file docker "$dcfg"; head -c 262144 "$droot$dcfg"; fi
if [ -f "$croot$ccfg" ]; then sec file containerd "$ccfg"; head -c 262144 "$croot$ccfg"; fi
ncfg=$NVIDIA_CONFIG
if [ -f "$R$ncfg" ]; then sec file nvidia "$ncfg"; head -c 262144 "$R$ncfg"; fi

if [ -n "$dpath" ]; then rpath=$dpath src=dockerd
elif [ -n "$cpath" ]; then rpath=$cpath src=containerd
else rpath=$SYSTEMD_PATH src=default
fi
sec runtime-path
kv source "$src"
kv path "$rpath"

# Every binary the runtime might execute: runc and docker-runc (Docker <= 18.06), and any runtime
# named in the configs (NVIDIA's shim's `runtimes` too), on the runtime's PATH, and absolute
# paths named in the configs. Copies of one file are hashed once.
names="runc docker-runc" abs=
set -f
s='[[:space:]]*' q="[\"']"
# shellcheck disable=SC2020 # tr maps each of , [ ] = to a newline
for v in $( { sed -n "s/.*\"path\"$s:$s\"\([^\"]*\)\".*/\1/p" "$droot$dcfg"
              sed -n "s/^${s}BinaryName$s=$s$q\([^\"']*\)$q.*/\1/p" "$croot$ccfg"
              awk '/^[[:space:]]*runtimes[[:space:]]*=/ { on = 1 } on { print } /]/ { on = 0 }' \
                  "$R$ncfg" | tr ',[]=' '\n\n\n\n' | sed -n "s/^$s$q\([^\"']*\)$q$s\$/\1/p"
            } 2>/dev/null ); do
    case $v in /*) abs="$abs $v" ;; */*) ;; *) names="$names $v" ;; esac
done
set +f
cands=
add() { case " $cands " in *" $1 "*) ;; *) cands="$cands $1" ;; esac; }
rest=$rpath:
while [ -n "$rest" ]; do
    dir=${rest%%:*} rest=${rest#*:}
    [ -n "$dir" ] || continue
    for n in $names; do [ -f "$R$dir/$n" ] && add "$dir/$n"; done
done
for a in $abs; do [ -f "$R$a" ] && add "$a"; done

# The package owning a file (packages never install under /usr/local), and its version.
if [ -d /var/lib/dpkg/info ]; then
    manager=dpkg
    # A diversion of the file: where dpkg puts the package's copy, and whose diversion it is.
    diversion() {
        command -v dpkg-divert >/dev/null 2>&1 || return 0
        by=$(dpkg-divert --listpackage "$1" 2>/dev/null | head -n 1)
        [ -n "$by" ] || return 0
        kv diverted_by "$by"
        kv diverted_to "$(dpkg-divert --truename "$1" 2>/dev/null | head -n 1)"
    }
    owner() {
        f=$(grep -l -x -F -e "$1" -e "$2" /var/lib/dpkg/info/*.list 2>/dev/null | head -n 1)
        f=${f##*/}
        printf '%s\n' "${f%.list}"
    }
    pkgversion() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null; }
    # 1 when dpkg's md5sum of the file (package $1, found as $2, really $3) matches, 0 if not.
    intact() {
        want=$(awk -v a="${2#/}" -v b="${3#/}" '$2 == a || $2 == b { print $1; exit }' \
            "/var/lib/dpkg/info/$1.md5sums" 2>/dev/null)
        [ -n "$want" ] || return 0
        have=$(md5sum "$3" 2>/dev/null)
        if [ "${have%% *}" = "$want" ]; then echo 1; else echo 0; fi
    }
elif command -v rpm >/dev/null 2>&1; then
    manager=rpm
    diversion() { :; }
    owner() { o=$(rpm -qf --qf '%{NAME}\n' "$2" 2>/dev/null) && printf '%s\n' "$o" | head -n 1; }
    pkgversion() { rpm -q --qf '%{VERSION}-%{RELEASE}\n' "$1" 2>/dev/null | head -n 1; }
    intact() {  # rpm -V prints a line for a changed file; a 5 in its third column: the digest
        case $(rpm -Vf "$3" 2>/dev/null | grep -F -e " $3" | head -n 1) in
            ??5*) echo 0 ;; *) echo 1 ;;
        esac
    }
else
    manager=
    diversion() { :; }
    owner() { :; }
    intact() { :; }
fi

ident() { stat -L -c '%d:%i' "$1" 2>/dev/null; }
# `mount_of DIR [PROC]`: "ro MOUNTPOINT" or "rw MOUNTPOINT" for the mount DIR is on, as this
# process (or /proc/PID PROC) sees it (its mountinfo: the last of the longest mount points above
# DIR; read-only when its own options or its file system's say ro). A runc on a read-only mount
# (Flatcar's and Fedora CoreOS's /usr) cannot be replaced by a rename beside it.
mount_of() {
    awk -v p="$1" '
        function unescape(s) {
            gsub(/\\040/, " ", s); gsub(/\\011/, "\t", s); gsub(/\\012/, "\n", s)
            gsub(/\\134/, "\\", s)
            return s
        }
        {
            mp = unescape($5)
            if (mp != "/" && p != mp && index(p, mp "/") != 1) next
            if (length(mp) < best) next
            best = length(mp); at = mp; opts = $6; super = ""
            for (i = 7; i < NF; i++) if ($i == "-") { super = $(i + 3); break }
        }
        END {
            if (at == "") exit
            ro = (("," opts ",") ~ /,ro,/ || ("," super ",") ~ /,ro,/)
            printf "%s %s\n", (ro ? "ro" : "rw"), at
        }' "${2:-/proc/self}/mountinfo" 2>/dev/null
}

# `write_access DIR`: "ok", or why root cannot write in DIR, asked of access(2) alone: facts write
# nothing (not even a file made and removed, which changes the folder and wakes file-integrity
# watchers). The mount table can say rw where writes fail (an overlay whose upper layer's file
# system went read-only, an NFS export the server made read-only); root passes every permission
# bit, so a folder `test -w` refuses to root is read-only (or immutable). busybox's `test -w`
# says yes to root whatever the mount: there the mount table alone decides.
write_access() {
    if [ "$(id -u)" = 0 ] && ! [ -w "$1" ]; then echo "test -w: Read-only file system"
    else echo ok
    fi
}

seen=
for b in $cands; do
    if [ -z "$R" ]; then real=$(readlink -f "$b" 2>/dev/null) || real=$b
    else real=$(inroot "$R" "$b") || real=$b
    fi
    case " $seen " in *" $real "*) sec alias "$b"; kv real "$real"; continue ;; esac
    seen="$seen $real"
    if why=$(untrusted "$b" "$R"); then out="not run: $why" rc=
    else out=$(timeout -s KILL 10 "$R$real" --version 2>&1); rc=$?
    fi
    sec binary "$b"
    kv real "$real"
    if [ -n "$rc" ]; then kv trusted 1; else kv untrusted "$why"; fi
    if [ -x "$R$b" ]; then kv executable 1; else kv executable 0; fi
    kv version_exit "$rc"
    kv size "$(wc -c < "$R$b" 2>/dev/null)"
    sum=$(sha256sum "$R$b" 2>/dev/null)
    kv sha256 "${sum%% *}"
    kv df "$(df -Pk "$R${b%/*}" 2>/dev/null | tail -n 1)"
    kv mount "$(mount_of "${real%/*}")"
    kv write_access "$(write_access "${real%/*}")"
    if [ -n "$R" ]; then
        # Seen through the daemons' namespace: is this session's file at that path the same one
        # (device and inode, its folder's too), itself trusted here?
        kv mntns "$(readlink "${R%/root}/ns/mnt" 2>/dev/null)"
        kv seen_at "$R$real"
        kv fstype "$(stat -f -c %T "$R$real" 2>/dev/null)"
        # (from the mount table: busybox's `test -w` as root ignores a read-only mount)
        case $(mount_of "${real%/*}" "${R%/root}") in
            ro\ *) kv writable_there 0 ;; rw\ *) kv writable_there 1 ;;
        esac
        here=0
        if [ "$(ident "$R$real")" = "$(ident "$real")" ] && [ -n "$(ident "$real")" ] &&
            [ "$(ident "$R${real%/*}")" = "$(ident "${real%/*}")" ] &&
            ! untrusted "$b" > /dev/null && [ "$(readlink -f "$b")" = "$real" ]; then
            here=1
        fi
        kv same_here "$here"
    fi
    pkg=  # (the package database describes this session's files only)
    case $real in
        /usr/local/*) ;;
        *) [ -n "$R" ] && [ "$here" != 1 ] || pkg=$(owner "$b" "$real") ;;
    esac
    if [ -n "$pkg" ]; then
        kv package "$pkg"
        kv package_version "$(pkgversion "$pkg")"
        kv package_intact "$(intact "$pkg" "$b" "$real")"
        kv package_manager "$manager"
        diversion "$real"
    fi
    sec version "$b"
    printf '%s\n' "$out"
done

sec sysctl-runtime
cat "$SYSCTL_PROC" 2>/dev/null
sec sysctl-files
set --
# shellcheck disable=SC2086 # a list of folders, split on purpose (no glob characters)
for d in $SYSCTL_DIRS; do
    for f in "$d"/*.conf; do
        [ -e "$f" ] || continue
        if [ -L "$f" ]; then printf '%s\t%s\n' "$f" "$(readlink -f "$f")"
        else printf '%s\n' "$f"
        fi
        set -- "$@" "$f"
    done
done
if [ -e "$SYSCTL_CONF" ]; then printf '%s\n' "$SYSCTL_CONF"; set -- "$@" "$SYSCTL_CONF"; fi
sec sysctl-lines
key="^[[:space:]]*-?${SYSCTL_KEY_ERE}[[:space:]]*="
[ $# -eq 0 ] || grep -n -H -E "$key" "$@" 2>/dev/null

if [ -f "$RECORD_PATH" ]; then sec record; head -c 1048576 "$RECORD_PATH"; fi
sec end
