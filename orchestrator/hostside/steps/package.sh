# What runc-rollout does about the package that owns a runc it swaps (orchestrator/host/commands.py
# sets the parameters above this text):
#
#   ACTION=divert   dpkg: the package's file is copied to DIVERT (a copy to a new name, synced,
#                   renamed: DIVERT is whole or absent), then a local diversion of TARGET to DIVERT
#                   is registered without renaming anything. TARGET itself is not touched: the
#                   swap that follows is the one rename over it, so at no moment is TARGET
#                   missing or partly written, and from then on the package's next install or
#                   upgrade writes its runc to DIVERT.
#   ACTION=restore  dpkg, rollback of a diversion this rollout added: the package's own file
#                   (DIVERT, when it matches the package's md5sum; else the backup of BEFORE)
#                   copied beside TARGET and renamed over it, then the diversion removed, then
#                   DIVERT removed; says what `dpkg --verify` says of TARGET.
#   ACTION=hold-prepare  rpm: which file the hold will change (/etc/dnf/dnf.conf, else
#                   /etc/yum.conf), kept in the file backup store by its sha256: changes nothing
#                   the host uses, so the host record can name the file before it is changed.
#   ACTION=hold     rpm: `exclude=PKG` in the [main] section of CONF, if CONF is still BEFORE.
#   ACTION=verify   what the package manager says of TARGET now (dpkg --verify, rpm -V).
#
# Output: key=value lines; exit 0, or 1 with why= on the last line. Nothing of the host's own
# output is evaluated: names travel as quoted parameters.

md5_of() { md5sum "$1" 2>/dev/null | cut -d' ' -f1; }
fail() { printf 'why=%s\n' "$1"; exit 1; }

# dpkg-divert renames nothing when told --no-rename (dpkg >= 1.19.1); older ones rename
# nothing unless told --rename, and do not know --no-rename.
norename() {
    if dpkg-divert --help 2>&1 | grep -q -e '--no-rename'; then echo --no-rename; fi
}

# The package's own md5sum of TARGET (dpkg's info file lists paths without the leading /).
package_md5() {
    awk -v p="${TARGET#/}" '$2 == p { print $1; exit }' "/var/lib/dpkg/info/$PKG.md5sums" \
        2>/dev/null
}

verify_line() {
    if [ "$MANAGER" = dpkg ] && command -v dpkg >/dev/null 2>&1; then
        said=$(dpkg --verify "$PKG" 2>/dev/null | awk -v t="$TARGET" '$NF == t' | head -n 1)
    elif [ "$MANAGER" = rpm ] && command -v rpm >/dev/null 2>&1; then
        said=$(rpm -V "$PKG" 2>/dev/null | awk -v t="$TARGET" '$NF == t' | head -n 1)
    else
        echo verify=unknown; return 0
    fi
    if [ -z "$said" ]; then echo verify=clean
    else printf 'verify=changed %s\n' "$(printf '%s' "$said" | cut -c1-11 | tr -cd '.?0-9A-Za-z')"
    fi
}

case $ACTION in
divert)
    command -v dpkg-divert >/dev/null 2>&1 || fail "no dpkg-divert on the host"
    [ -f "$TARGET" ] && [ ! -L "$TARGET" ] || fail "$TARGET is not a plain file"
    by=$(dpkg-divert --listpackage "$TARGET" 2>/dev/null | head -n 1)
    if [ -n "$by" ]; then
        to=$(dpkg-divert --truename "$TARGET" 2>/dev/null | head -n 1)
        # This run's own diversion, from before a crash: nothing more to do.
        if [ "$by" = LOCAL ] && [ "$to" = "$DIVERT" ] && [ -f "$DIVERT" ]; then
            echo diversion=present; exit 0
        fi
        fail "$TARGET is diverted already (by $by); not touched"
    fi
    if [ -e "$DIVERT" ] || [ -L "$DIVERT" ]; then
        [ -f "$DIVERT" ] && [ ! -L "$DIVERT" ] || fail "$DIVERT exists and is not a plain file"
    fi
    copy_to "$TARGET" "$DIVERT" || fail "could not copy $TARGET to $DIVERT"
    nr=$(norename)
    if ! dpkg-divert --local ${nr:+"$nr"} --divert "$DIVERT" --add "$TARGET" >/dev/null 2>&1; then
        rm -f "$DIVERT"
        fail "dpkg-divert --add $TARGET failed"
    fi
    echo diversion=added
    echo "diverted_sha256=$(sha_of "$DIVERT")"
    ;;
restore)
    want=$(package_md5)
    by=
    command -v dpkg-divert >/dev/null 2>&1 &&
        by=$(dpkg-divert --listpackage "$TARGET" 2>/dev/null | head -n 1)
    if [ -n "$by" ] && [ "$by" != LOCAL ]; then
        fail "$TARGET is diverted by $by now, not by this rollout; inspect it by hand"
    fi
    # shellcheck disable=SC2153 # BEFORE is a parameter of this action (and hold's)
    if [ -f "$DIVERT" ] && [ ! -L "$DIVERT" ] && [ -n "$want" ] && [ "$(md5_of "$DIVERT")" = "$want" ]
    then
        src=$DIVERT restored=package
    elif [ -f "$BACKUP" ] && [ "$(sha_of "$BACKUP")" = "$BEFORE" ]; then
        src=$BACKUP restored=before
    else
        fail "neither $DIVERT (the package's md5sum) nor the backup of $BEFORE is at hand"
    fi
    copy_to "$src" "$TARGET" || fail "could not put $src at $TARGET"
    if [ "$by" = LOCAL ]; then
        nr=$(norename)
        dpkg-divert --local ${nr:+"$nr"} --remove "$TARGET" >/dev/null 2>&1 ||
            fail "dpkg-divert --remove $TARGET failed"
    fi
    # With the diversion gone no package knows the name DIVERT any more.
    if [ "$by" = LOCAL ] || [ "$src" = "$DIVERT" ]; then rm -f "$DIVERT"; fi
    echo "restored=$restored"
    echo "sha256=$(sha_of "$TARGET")"
    if [ -n "$want" ] && [ "$(md5_of "$TARGET")" = "$want" ]; then echo md5=package
    else echo md5=other
    fi
    verify_line
    ;;
hold-prepare)
    conf=
    for c in /etc/dnf/dnf.conf /etc/yum.conf; do
        if [ -e "$c" ]; then conf=$c; break; fi
    done
    [ -n "$conf" ] || fail "neither /etc/dnf/dnf.conf nor /etc/yum.conf on the host"
    [ -f "$conf" ] && [ ! -L "$conf" ] || fail "$conf is not a plain file"
    before=$(sha_of "$conf")
    dest=$FILES/$before
    [ "$(sha_of "$dest")" = "$before" ] || copy_to "$conf" "$dest" || fail "could not back up $conf"
    printf 'file=%s before=%s\n' "$conf" "$before"
    ;;
hold)
    # shellcheck disable=SC2153 # CONF is a parameter of this action
    conf=$CONF
    [ -f "$conf" ] && [ ! -L "$conf" ] || fail "$conf is not a plain file"
    before=$(sha_of "$conf")
    [ "$before" = "$BEFORE" ] || fail "$conf changed since it was backed up; not touched"
    t=$(mktemp "$conf.runc-rollout.XXXXXX") || exit 1
    # One word more on the [main] section's exclude= line (excludepkgs= is dnf's other name for
    # it), else a new line at the end of [main] (a [main] made if there is none); a word already
    # there is not added twice.
    if cp -p "$conf" "$t" && awk -v pkg="$PKG" '
        function flush() { if (inmain && !done) { print "exclude=" pkg; done = 1 } }
        /^[ \t]*\[/ { flush(); inmain = ($0 ~ /^[ \t]*\[main\][ \t]*$/); print; next }
        inmain && !done && /^[ \t]*(exclude|excludepkgs)[ \t]*=/ {
            line = $0; sub(/^[^=]*=[ \t]*/, "", line)
            n = split(line, words, /[ \t,]+/)
            for (i = 1; i <= n; i++) if (words[i] == pkg) { print; done = 1; next }
            print $0 (line == "" ? "" : " ") pkg; done = 1; next
        }
        { print }
        END { if (!done && !inmain) { print "[main]" } if (!done) print "exclude=" pkg }
    ' "$conf" > "$t" && sync "$t" && mv -f "$t" "$conf"; then
        printf 'file=%s before=%s after=%s\n' "$conf" "$before" "$(sha_of "$conf")"
    else
        rm -f "$t"; fail "could not write $conf"
    fi
    ;;
verify)
    verify_line
    ;;
*)
    fail "unknown action $ACTION"
    ;;
esac
