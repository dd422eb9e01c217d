# backup: keep the current runc, TARGET (sha256 BEFORE), in the backup store by its checksum
# (a copy, then a rename).
actual=$(sha256sum "$TARGET" | cut -d' ' -f1)
[ "$actual" = "$BEFORE" ] || { echo "actual=$actual"; exit "$EXIT_MISMATCH"; }
dest=$BACKUP_DIR/$BEFORE
if [ ! -f "$dest" ] || [ "$(sha256sum "$dest" | cut -d' ' -f1)" != "$BEFORE" ]; then
    copy_to "$TARGET" "$dest" || exit 1
fi
echo "backup=$dest"
