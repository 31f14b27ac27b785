"""How the browser tests start Chromium: Debian's, never a downloaded one, with nothing of its
own reaching out (../shared/MACHINE.md), and which hosts a page may talk to."""

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-gpu"]
LOCAL = {"127.0.0.1", "localhost"}
"""The only hosts a page of the platform may send a request to."""
