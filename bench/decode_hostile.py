"""A hostile message: a known header, then 2 MB of 0xFF (one endless varint), decoded by us and by fastavro.

    .venv/bin/python -m bench.decode_hostile

Prints the median of 5 attempts of each.  Both refuse the message; what matters is how long that takes (a
varint read without a length cap was quadratic: minutes for 2 MB, with a consumer stalled meanwhile).
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import fastavro

from enrolment.messages.codec import HEADER_LEN, MARKER, DecodeError, default_codec

SIZE = 2 * 1024 * 1024
ATTEMPTS = 5
SCHEMA = "CommandResult"


def median_refusal_s(decode: Callable[[], object]) -> tuple[float, str]:
    """Median seconds a decode takes to raise, and the exception it raised."""
    times: list[float] = []
    raised = "nothing (accepted!)"
    for _ in range(ATTEMPTS):
        started = time.perf_counter()
        try:
            decode()
        except Exception as exc:  # noqa: BLE001 - we report whatever each decoder raises
            raised = type(exc).__name__
        times.append(time.perf_counter() - started)
    return statistics.median(times), raised


def main() -> None:
    codec = default_codec()
    entry = codec.current[SCHEMA]
    message = MARKER + entry.fingerprint + b"\xff" * SIZE
    ours = median_refusal_s(lambda: codec.decode(message))
    theirs = median_refusal_s(lambda: fastavro.schemaless_reader(io.BytesIO(message[HEADER_LEN:]), entry.parsed))
    print(f"{SCHEMA} header + {SIZE:,} bytes of 0xFF, median of {ATTEMPTS} attempts:")
    print(f"  {'ours (Codec.decode)':<32} {ours[0] * 1000:10.3f} ms  raised {ours[1]}")
    print(f"  {'fastavro.schemaless_reader':<32} {theirs[0] * 1000:10.3f} ms  raised {theirs[1]}")
    if ours[1] != DecodeError.__name__:
        raise SystemExit("our decoder did not raise DecodeError")


if __name__ == "__main__":
    main()
