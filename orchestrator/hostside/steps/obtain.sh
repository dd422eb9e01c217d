# obtain: put the artifact (sha256 SHA, SIZE bytes) at STAGED without the controller sending
# it: a copy this run staged already, the backup store's copy, or a fetch from URL (curl or
# wget, the URL as it is, never a glob). Prints source=staged|backup|url; exits EXIT_NEEDS_PUSH
# (why=) if none has it, EXIT_MISMATCH (bytes= or actual=) if what URL served is not the
# artifact. What a URL serves is cut at SIZE + 1 bytes on its way to the disk, whatever it says
# its length is; the size is checked before the sha256. check-staged proves the file after.
size_of() { wc -c < "$1" 2>/dev/null | tr -d ' '; }
whole() { [ -f "$1" ] && [ "$(size_of "$1")" = "$SIZE" ] && [ "$(sha_of "$1")" = "$SHA" ]; }
if whole "$STAGED"; then echo source=staged; exit 0; fi
rm -f "$STAGED"
held=$BACKUP_DIR/$SHA
if whole "$held" && cp "$held" "$STAGED" 2>/dev/null && whole "$STAGED"; then
    echo source=backup; exit 0
fi
rm -f "$STAGED"
[ -n "$URL" ] || { echo "why=no copy on the host"; exit "$EXIT_NEEDS_PUSH"; }
# The URL goes on stdin (printf is built in), never in an argument: a token in its query
# would be in `ps` for any user of the host. curl reads it as a config line, wget as a list.
if command -v curl >/dev/null 2>&1; then
    set -- curl -fsS -L --globoff --max-redirs 5 --proto =http,https --proto-redir =http,https \
        --max-filesize "$SIZE" -K -
    feed="url = \"$URL\""
elif command -v wget >/dev/null 2>&1; then
    set -- wget -q -O - -i -
    feed=$URL
else
    echo "why=neither curl nor wget on the host"; exit "$EXIT_NEEDS_PUSH"
fi
# What it says goes to "said", its exit status last (rc=N); what it serves through head. curl
# refuses a Content-Length over the size before reading any (exit 63): another file too.
said=$({ { printf '%s\n' "$feed" | timeout -s KILL "$TIMEOUT" "$@" 2>&3 3>&-; \
    echo "rc=$?" >&3; } | head -c $((SIZE + 1)) > "$STAGED"; } 3>&1)
rc=${said##*rc=}; said=${said%rc=*}
got=$(size_of "$STAGED")
if [ "${got:-0}" -gt "$SIZE" ] || { [ "$1" = curl ] && [ "$rc" = 63 ]; }; then
    rm -f "$STAGED"; echo "bytes=more than $SIZE"; exit "$EXIT_MISMATCH"
fi
if [ "$rc" != 0 ]; then
    rm -f "$STAGED"
    echo "why=fetch failed (exit $rc): $(printf '%s' "$said" | tr -s '\n' ' ' | head -c 200)"
    exit "$EXIT_NEEDS_PUSH"
fi
if [ "$got" != "$SIZE" ]; then rm -f "$STAGED"; echo "bytes=$got"; exit "$EXIT_MISMATCH"; fi
actual=$(sha_of "$STAGED")
if [ "$actual" != "$SHA" ]; then
    rm -f "$STAGED"; echo "actual=${actual:-missing}"; exit "$EXIT_MISMATCH"
fi
echo source=url
