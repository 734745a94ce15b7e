"""The demo's last check: the demo account (password on stdin) signs in and sees the demo batch's participants.

Arguments: URL USER_ID BATCH_ID COUNT (the store's participant count, or - to only open the batch page).

`make demo` ends with a working dashboard, so it proves one rather than only printing a command; a failure is a
sentence and exit 1. Nothing secret is printed here (the demo prints the account itself).
"""

from __future__ import annotations

import re
import sys
import time

import httpx


def wait_healthy(client: httpx.Client, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"The dashboard did not answer within {timeout_s:.0f} s: see .stack/logs/dashboard.log.")
        time.sleep(0.5)


def main() -> None:
    url, user_id, batch, count = sys.argv[1:5]
    password = sys.stdin.readline().strip()
    with httpx.Client(base_url=url, timeout=30, headers={"Origin": url}) as client:
        wait_healthy(client)
        signed = client.post("/login", data={"username": user_id, "password": password, "next": "/courses"})
        if signed.status_code != 303:
            sys.exit(f"The demo account {user_id} could not sign in (HTTP {signed.status_code}).")
        page = client.get(f"/batches/{batch}")
        if page.status_code != 200:
            sys.exit(f"The demo account {user_id} could not open {batch}'s page (HTTP {page.status_code}).")
        if count != "-":
            wait_for_count(client, batch, count)
    shown = "" if count == "-" else f" with its {count} participants"
    print(f"   dashboard running at {url}: {user_id} signed in and sees {batch}{shown}")


def wait_for_count(client: httpx.Client, batch: str, count: str, timeout_s: float = 120.0) -> None:
    """The read model catches up from the topics: the page shows the store's count once it has."""
    deadline = time.monotonic() + timeout_s
    while (shown := re.search(r"Showing \S+ of (\d+)", client.get(f"/batches/{batch}").text)) is None or (
        shown.group(1) != count
    ):
        if time.monotonic() > deadline:
            sys.exit(f"The dashboard did not show {batch}'s {count} participants within {timeout_s:.0f} s.")
        time.sleep(1)


if __name__ == "__main__":
    main()
