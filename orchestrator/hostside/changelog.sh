# changelog: the changelog of package PACKAGE, as its package manager keeps it, for the audit
# (orchestrator/diagnose/changelog.py parses it; nothing of it is executed). Prints `format=`,
# `version=` and `status=` lines, then the line BODY and at most LIMIT bytes of the changelog.
export LC_ALL=C
pkg=$PACKAGE
unpack() {
    if command -v gzip >/dev/null 2>&1; then gzip -dc
    elif command -v zcat >/dev/null 2>&1; then zcat
    elif command -v busybox >/dev/null 2>&1; then busybox gzip -dc
    else return 3
    fi
}
if command -v dpkg-query >/dev/null 2>&1 && [ -d /var/lib/dpkg/info ]; then
    echo format=debian
    echo "version=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null | head -c 100)"
    f=/usr/share/doc/$pkg/changelog.Debian.gz
    if [ ! -f "$f" ] || [ -h "$f" ]; then echo status=missing; exit 0; fi
    if ! command -v gzip >/dev/null 2>&1 && ! command -v zcat >/dev/null 2>&1 \
        && ! command -v busybox >/dev/null 2>&1; then echo status=no-gzip; exit 0; fi
    echo status=ok
    echo "$BODY"
    unpack < "$f" 2>/dev/null | head -c "$LIMIT"
elif command -v rpm >/dev/null 2>&1; then
    echo format=rpm
    echo "version=$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$pkg" 2>/dev/null | head -c 100)"
    echo status=ok
    echo "$BODY"
    rpm -q --changelog "$pkg" 2>/dev/null | head -c "$LIMIT"
else
    echo status=no-package-manager
fi
