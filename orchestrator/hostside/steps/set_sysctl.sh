# set-sysctl: set the runtime value of SYSCTL_KEY, and every line of the files (the arguments)
# that sets it, to VALUE. Each file is backed up by its checksum before it is changed; one
# `file=PATH before=SHA after=SHA` line per file reports its checksum before and after.
refuse_untrusted 1 "$@"
printf '%s\n' "$VALUE" > "$SYSCTL_PROC" || exit 1
for f; do
    sum=$(sha256sum "$f" | cut -d' ' -f1) || exit 1
    [ -f "$FILE_BACKUP_DIR/$sum" ] || copy_to "$f" "$FILE_BACKUP_DIR/$sum" || exit 1
    sed -i -E "s#^([[:space:]]*-?)${SYSCTL_KEY_ERE}[[:space:]]*=.*\$#\\1$SYSCTL_KEY = $VALUE#" "$f" \
        || exit 1
    printf 'file=%s before=%s after=%s\n' "$f" "$sum" "$(sha256sum "$f" | cut -d' ' -f1)"
done
echo "runtime=$(cat "$SYSCTL_PROC")"
