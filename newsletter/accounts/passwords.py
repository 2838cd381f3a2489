"""Optional passwords, hashed with argon2id (argon2-cffi's defaults, RFC 9106's second choice).

A site may let a user set a password (``newsletter users password EMAIL``) besides the
emailed link. Only the PHC-format hash is stored. Checking an address that has no
password still runs one argon2 verification against a fixed hash, so the time taken
does not tell whether the address has an account.
"""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from newsletter.core.errors import InputError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_HASHER = PasswordHasher()
# Verified against when there is no real hash, to spend the same time.
_DUMMY = _HASHER.hash("not a password anybody has: the timing decoy")


def hash_password(password: str) -> str:
    """The argon2id hash of a new password; an InputError if it is too short or too long."""
    if len(password) < MIN_LENGTH:
        raise InputError(f"the password is too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InputError(f"the password is too long: use at most {MAX_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash (False when there is none)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password[:MAX_LENGTH]) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def rehashed(stored: str, password: str) -> str:
    """The hash to keep after a successful check: a new one if ``stored`` used weaker parameters."""
    return _HASHER.hash(password) if _HASHER.check_needs_rehash(stored) else stored
