# runc-version: what TARGET says it is, within TIMEOUT seconds.
timeout -s KILL "$TIMEOUT" "$TARGET" --version
