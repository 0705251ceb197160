"""Pseudonyms: a stable name for a person within one scope (such as a merchant) that tells people
apart without saying who they are.

A pseudonym is the HMAC-SHA256 of (prefix, scope, subject) under a server key, shortened to a
readable form such as "cust-7f3a9c2e1b04". The same subject has the same pseudonym in a scope
every time, and unrelated ones in other scopes, so two merchants cannot match their customers.
Without the key nobody can go back from a pseudonym to the subject, nor test a guessed subject
against one. The prefix is part of what is hashed, so pseudonyms made for other uses (another
prefix) are unrelated to these even in the same scope. A merchant sees one customer under one
pseudonym everywhere (fraud review, redemptions, the inbox, the console, webhooks): a complaint
in the inbox and that customer's refused check-ins are then seen to be the same person's.

12 hex digits are 48 bits: among 100,000 people in one scope, the chance that any two share a
pseudonym is about 2 in 100,000 (n² / 2⁴⁹). A pseudonym is for people to read; rows are found by id.

The key is CHECKIN_PSEUDONYM_KEY. Unset, it is derived from the HS256 secret through a one-way
hash (so it reveals nothing about the secret); without a secret, in development and test, from a
fixed development key. Settings refuse production with neither (core/settings.py). A derived key
changes when the JWT secret is rotated, and every pseudonym with it: set the key explicitly where
pseudonyms must outlive a rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from core.settings import Settings

DIGITS = 12
PREFIX = re.compile(r"^[a-z]{1,16}$")
_DERIVATION_LABEL = b"checkin-offers pseudonyms\0"


def pseudonym(subject: str, scope: str, *, key: bytes, prefix: str = "cust") -> str:
    """The subject's pseudonym in the scope: `{prefix}-` and 12 hex digits."""
    if not PREFIX.match(prefix):
        raise ValueError("a pseudonym prefix is 1-16 lowercase letters")
    if "\0" in subject or "\0" in scope:  # NUL separates the parts: with one inside, two pairs could meet
        raise ValueError("a pseudonym's subject and scope contain no NUL")
    message = b"\0".join(part.encode() for part in (prefix, scope, subject))
    return f"{prefix}-{hmac.new(key, message, hashlib.sha256).hexdigest()[:DIGITS]}"


def pseudonym_key(settings: Settings) -> bytes:
    """CHECKIN_PSEUDONYM_KEY, or the key derived when it is unset (see the module's docstring)."""
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    return hashlib.sha256(_DERIVATION_LABEL + (settings.jwt_secret or "").encode()).digest()


def customer_pseudonym(settings: Settings, merchant_id: object, sub: str) -> str:
    """How a merchant sees a customer: stable for that merchant, never the raw sub."""
    return pseudonym(sub, str(merchant_id), key=pseudonym_key(settings))
