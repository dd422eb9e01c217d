# lock: take the host for run RUN_ID (mkdir is the atomic test-and-set); a lock held by the
# same run (a resume) is taken over. Another run's lock: its owner, exit EXIT_LOCKED.
mkdir -p "$BACKUP_DIR" "$FILE_BACKUP_DIR" && chmod 0700 "$STATE_DIR" || exit 1
if mkdir "$LOCK_DIR" 2>/dev/null; then
    printf '%s\n' "$RUN_ID" > "$LOCK_DIR/owner" && echo lock=taken
elif [ "$(cat "$LOCK_DIR/owner" 2>/dev/null)" = "$RUN_ID" ]; then
    echo lock=resumed
else
    echo "owner=$(cat "$LOCK_DIR/owner" 2>/dev/null || echo unknown)"
    exit "$EXIT_LOCKED"
fi
