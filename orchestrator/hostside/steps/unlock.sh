# unlock: release the host if run RUN_ID holds it; never removes another run's lock.
if [ "$(cat "$LOCK_DIR/owner" 2>/dev/null)" = "$RUN_ID" ]; then
    rm -f "$LOCK_DIR/owner" && rmdir "$LOCK_DIR" && echo lock=released
else
    echo lock=not-ours
fi
