# push: take SIZE bytes of gzip on stdin and write what they decompress to at STAGED, cut at
# UNPACKED + 1 bytes (a gzip bomb fills no disk); anything but UNPACKED bytes is refused. The
# only step that reads stdin; check-staged proves the result.
command -v gunzip >/dev/null 2>&1 || { echo "why=no gunzip on the host"; exit "$EXIT_NO_GUNZIP"; }
head -c "$SIZE" | gunzip -c | head -c $((UNPACKED + 1)) > "$STAGED" || exit 1  # (read-only...)
got=$(wc -c < "$STAGED" | tr -d ' ')
[ "$got" -le "$UNPACKED" ] || got="more than $UNPACKED"
if [ "$got" != "$UNPACKED" ]; then
    rm -f "$STAGED"; echo "why=the push unpacked to $got bytes"; exit 1
fi
chmod 0700 "$STAGED" && echo pushed=gzip
