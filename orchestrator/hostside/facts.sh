# The facts script: reads, never changes. orchestrator/host/facts.py renders it (NONCE delimits
# its sections, NVIDIA_CONFIG is the NVIDIA runtime's config file) and parses what it prints.
export LC_ALL=C
PATH=$SYSTEMD_PATH:$PATH
sec() { printf '\n@@%s@@ %s\n' "$NONCE" "$*"; }
kv() { printf '%s=%s\n' "$1" "$2"; }
printf 'runc-rollout-facts 1 %s\n' "$NONCE"

self_ns=$(readlink /proc/$$/ns/mnt 2>/dev/null)
init_ns=$(readlink /proc/1/ns/mnt 2>/dev/null)
ours() {
    [ "$self_ns" = "$init_ns" ] && return 0
    [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$self_ns" ]
}
# A daemon is the host's own when it runs in this session's mount namespace (not inside a
# container: those are skipped) as root (another user's is reported: prints why).
foreign() {
    uids=
    while read -r k a b _; do [ "$k" = Uid: ] && uids="$a $b"; done < "/proc/$1/status"
    [ "$uids" = "0 0" ] || { echo "owner uid ${uids% *}, not root"; return 0; }
    return 1
}
# untrusted FILE: functions.sh

sec host
kv arch "$(uname -m)"
kv kernel "$(uname -r)"
kv uid "$(id -u)"
kv now "$(date +%s)"
kv clk_tck "$(getconf CLK_TCK 2>/dev/null || echo 100)"
while read -r k v; do [ "$k" = btime ] && kv btime "$v"; done < /proc/stat

dpid='' cpid='' dpath='' cpath=''
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
    if [ "$kind" = runc ]; then
        ours "$p" || ours "$2" || continue
    else
        [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$self_ns" ] || continue
        if why=$(foreign "$p"); then sec foreign "$p"; kv comm "$comm"; kv why "$why"; continue; fi
    fi
    sec proc "$p"
    kv comm "$comm"
    kv stat "$stat"
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
    if ! [ "$d/exe" -ef "$exe" ]; then kv untrusted "$exe is no longer the file it runs"
    elif why=$(untrusted "$exe"); then kv untrusted "$why"
    else kv version "$(timeout -s KILL 10 "$exe" --version 2>/dev/null | head -n 1)"
    fi
    if [ "$kind" = dockerd ] && { [ -z "$dpid" ] || [ "$p" -lt "$dpid" ]; }; then
        dpid=$p dpath=$path
    elif [ "$kind" = containerd ] && { [ -z "$cpid" ] || [ "$p" -lt "$cpid" ]; }; then
        cpid=$p cpath=$path
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
dcfg=$(argval "$dpid" /etc/docker/daemon.json --config-file)
ccfg=$(argval "$cpid" /etc/containerd/config.toml --config -c)
if [ -f "$dcfg" ]; then sec file docker "$dcfg"; head -c 262144 "$dcfg"; fi
if [ -f "$ccfg" ]; then sec file containerd "$ccfg"; head -c 262144 "$ccfg"; fi
ncfg=$NVIDIA_CONFIG
if [ -f "$ncfg" ]; then sec file nvidia "$ncfg"; head -c 262144 "$ncfg"; fi

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
for v in $( { sed -n "s/.*\"path\"$s:$s\"\([^\"]*\)\".*/\1/p" "$dcfg"
              sed -n "s/^${s}BinaryName$s=$s$q\([^\"']*\)$q.*/\1/p" "$ccfg"
              awk '/^[[:space:]]*runtimes[[:space:]]*=/ { on = 1 } on { print } /]/ { on = 0 }' \
                  "$ncfg" | tr ',[]=' '\n\n\n\n' | sed -n "s/^$s$q\([^\"']*\)$q$s\$/\1/p"
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
    for n in $names; do [ -f "$dir/$n" ] && add "$dir/$n"; done
done
for a in $abs; do [ -f "$a" ] && add "$a"; done

# The package owning a file (packages never install under /usr/local), and its version.
if [ -d /var/lib/dpkg/info ]; then
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
    owner() { o=$(rpm -qf --qf '%{NAME}\n' "$2" 2>/dev/null) && printf '%s\n' "$o" | head -n 1; }
    pkgversion() { rpm -q --qf '%{VERSION}-%{RELEASE}\n' "$1" 2>/dev/null | head -n 1; }
    intact() {  # rpm -V prints a line for a changed file; a 5 in its third column: the digest
        case $(rpm -Vf "$3" 2>/dev/null | grep -F -e " $3" | head -n 1) in
            ??5*) echo 0 ;; *) echo 1 ;;
        esac
    }
else
    owner() { :; }
    intact() { :; }
fi

# `mount_of DIR`: "ro MOUNTPOINT" or "rw MOUNTPOINT" for the mount DIR is on, as this process
# sees it (/proc/self/mountinfo: the last of the longest mount points above DIR; read-only when
# its own options or its file system's say ro). A runc on a read-only mount (Flatcar's and Fedora
# CoreOS's /usr) cannot be replaced by a rename beside it. Nothing is written to find out.
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
        }' /proc/self/mountinfo 2>/dev/null
}

seen=
for b in $cands; do
    real=$(readlink -f "$b" 2>/dev/null) || real=$b
    case " $seen " in *" $real "*) sec alias "$b"; kv real "$real"; continue ;; esac
    seen="$seen $real"
    if why=$(untrusted "$b"); then out="not run: $why" rc=
    else out=$(timeout -s KILL 10 "$real" --version 2>&1); rc=$?
    fi
    sec binary "$b"
    kv real "$real"
    if [ -n "$rc" ]; then kv trusted 1; else kv untrusted "$why"; fi
    if [ -x "$b" ]; then kv executable 1; else kv executable 0; fi
    kv version_exit "$rc"
    kv size "$(wc -c < "$b" 2>/dev/null)"
    sum=$(sha256sum "$b" 2>/dev/null)
    kv sha256 "${sum%% *}"
    kv df "$(df -Pk "${b%/*}" 2>/dev/null | tail -n 1)"
    kv mount "$(mount_of "${real%/*}")"
    case $real in /usr/local/*) pkg= ;; *) pkg=$(owner "$b" "$real") ;; esac
    if [ -n "$pkg" ]; then
        kv package "$pkg"
        kv package_version "$(pkgversion "$pkg")"
        kv package_intact "$(intact "$pkg" "$b" "$real")"
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
