"""Emit a hello.file_changed event, one JSON line, for every file that appears
in HELLO_WATCH_DIR (default /tmp/troupe-watch) while the sensor runs."""
import json
import os
import time

directory = os.environ.get("HELLO_WATCH_DIR", "/tmp/troupe-watch")
os.makedirs(directory, exist_ok=True)
seen = set(os.listdir(directory))  # files that were already there are not news
while True:
    names = set(os.listdir(directory))
    for name in sorted(names - seen):
        path = os.path.join(directory, name)
        try:
            size = os.path.getsize(path)
        except OSError:  # gone again before we looked
            continue
        event = {"trigger": "hello.file_changed", "payload": {"path": path, "name": name, "size": size}}
        print(json.dumps(event), flush=True)
    seen = names
    time.sleep(2)
