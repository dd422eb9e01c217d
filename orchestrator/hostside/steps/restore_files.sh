# restore-files: the arguments are triples PATH BEFORE AFTER (sha256 before the rollout, and
# what the rollout left, '' if not recorded); each file is put back from the backup store. A
# file that is neither AFTER nor BEFORE was edited since (by an admin): it is kept, and the old
# version put beside it (PATH$KEPT_SUFFIX); its line says kept=1.
refuse_untrusted 3 "$@"
while [ $# -ge 3 ]; do
    f=$1 before=$2 after=$3
    now=$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1)
    if [ "$now" = "$before" ]; then
        printf 'file=%s sha256=%s\n' "$f" "$now"
    elif [ -n "$after" ] && [ "$now" != "$after" ]; then
        copy_to "$FILE_BACKUP_DIR/$before" "$f$KEPT_SUFFIX" || exit 1
        printf 'file=%s sha256=%s kept=1\n' "$f" "$now"
    else
        copy_to "$FILE_BACKUP_DIR/$before" "$f" || exit 1
        printf 'file=%s sha256=%s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
    fi
    shift 3
done
