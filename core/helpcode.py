"""Help codes: the short number printed on a laptop's asset label and welcome sheet that
a caller types on a phone keypad ("tapez le numéro d'aide de votre ordinateur").

A help code is 8 digits: 7 digits that stand for the device, then a Damm check digit.
The Damm algorithm catches every single-digit mistake and every swap of two adjacent
digits (the two mistakes people make most when typing a number they read), with no
extra character (unlike ISO 7064 mod 11-10's ``X``): digits only, for a keypad.

The 7 digits are the device's id put through a fixed permutation of 0..9,999,999 (a
4-round Feistel network with cycle walking), so that:

- it is **unique** by construction (a permutation), with no table to fill and nothing
  to write when a label is printed;
- it **does not reveal the serial** (it is computed from the internal id, not from the
  serial), and neighbouring laptops get unrelated numbers, so a typo that the check
  digit misses (two non-adjacent digits wrong) lands on an unrelated id, almost always
  one that does not exist.

It is an identifier, not a secret: the permutation's key is a constant of the code and
never changes (a per-installation secret would add a way to break every label already
in a box, and no protection: advisors still check who is calling). Past 10 million
devices the code grows to 10 digits (9 + check), on a second domain; an 8-digit code
never decodes to an id of 10 million or more, so both lengths stay unique.
"""

from __future__ import annotations

import hashlib

# The Damm quasigroup (weakly totally anti-symmetric, order 10), as published by
# H. Michael Damm (2004) and used by every implementation.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

SHORT_BODY = 7
LONG_BODY = 9
SHORT_LEN = SHORT_BODY + 1
LONG_LEN = LONG_BODY + 1
_KEY = b"masterline help code v1"
_ROUNDS = 4


def damm_digit(digits: str) -> str:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return str(interim)


def damm_valid(digits: str) -> bool:
    """Whether ``digits`` (ending with its check digit) passes the Damm check."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim == 0


def _round(value: int, rnd: int, bits: int) -> int:
    data = _KEY + bytes((rnd, bits)) + value.to_bytes(8, "big")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << bits) - 1)


def _feistel(x: int, half: int, *, inverse: bool) -> int:
    mask = (1 << half) - 1
    left, right = x >> half, x & mask
    rounds = range(_ROUNDS - 1, -1, -1) if inverse else range(_ROUNDS)
    for rnd in rounds:
        if inverse:
            left, right = right ^ _round(left, rnd, half), left
        else:
            left, right = right, left ^ _round(right, rnd, half)
    return (left << half) | right


def _permute(x: int, domain: int, *, inverse: bool = False) -> int:
    """A permutation of ``range(domain)``: a Feistel network on the smallest even number
    of bits that holds ``domain``, walked until the value falls inside it (on average
    fewer than two steps: 10**7 needs 24 bits, 16.8 million values)."""
    bits = max(2, (domain - 1).bit_length())
    bits += bits % 2
    y = _feistel(x, bits // 2, inverse=inverse)
    while y >= domain:
        y = _feistel(y, bits // 2, inverse=inverse)
    return y


def encode(device_id: int) -> str:
    """The help code of the device with this id (8 digits; 10 past 10 million).

    :raises ValueError: an id below 1 or of a billion or more.
    """
    if device_id < 1 or device_id >= 10**LONG_BODY:
        raise ValueError("device id out of the help code's range")
    width = SHORT_BODY if device_id < 10**SHORT_BODY else LONG_BODY
    body = f"{_permute(device_id, 10**width):0{width}d}"
    return body + damm_digit(body)


def decode(text: str) -> int | None:
    """The device id a typed help code stands for, or None when it is not one (wrong
    length, not digits, a failed check digit). Spaces, dots and dashes are ignored: the
    code is printed in groups (``1234 5678``). Says nothing about whether the device
    exists."""
    digits = "".join(ch for ch in text if ch not in " .-")
    if len(digits) not in (SHORT_LEN, LONG_LEN) or not digits.isascii() or not digits.isdigit():
        return None
    if not damm_valid(digits):
        return None
    width = len(digits) - 1
    device_id = _permute(int(digits[:width]), 10**width, inverse=True)
    if device_id < 1 or (width == LONG_BODY and device_id < 10**SHORT_BODY):
        return None
    return device_id


def pretty(code: str) -> str:
    """``12345678`` → ``1234 5678`` (how labels and sheets print it)."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
