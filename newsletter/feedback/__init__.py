"""Bounces and complaints: read what comes back to the bounce address and act on it.

Input: ``.eml`` files, mbox files (one or many messages after ``From `` lines),
Maildir folders, or one message on standard input (a mail server's pipe).

What a message is, in this order:

1. an ARF feedback report (RFC 5965, ``multipart/report; report-type=feedback-report``)
   of type abuse, fraud or virus: a **complaint**. The member is found through the VERP
   envelope sender of the reported message, else through its ``List-Id`` and recipient;
   the membership ends as ``complained`` and the complaint counts against the edition;
2. a failure notice: flufl.bounce (Mailman's detectors) finds the failed recipients and
   whether the MTA gave up (*permanent*) or will retry (*temporary*). The member is the
   one the VERP address names (``news-bounces+e12.s345.SIG@...``, HMAC-signed, so it
   cannot be forged), else the subscriber with the failed address;
3. anything else (success notices, auto-replies, ordinary mail): **not a bounce**, and
   nothing changes.

Hard or soft, and what follows, is the bounce policy (``policy.py``), which a refusal
at send time (``550 5.1.1`` from the relay, recorded by the delivery engine) goes
through too: a failure is **hard** when the MTA gave up *and* its RFC 3463 status says
the mailbox or its domain is gone (``policy.GONE``: X.1.1 no such mailbox, X.1.2 no
such domain, X.1.3 bad syntax, X.1.6 moved, X.1.10 null MX, X.2.1 disabled, X.4.4 no
route). Everything else is **soft**: delays, full mailboxes (X.2.2, which RFC 3463
calls a persistent transient failure, and flufl's dsn_01 "disk quota" 5.0.0), policy
refusals, unspecified 5.0.0, expiry, and notices that give no status at all. The
status comes from the DSN's ``Status`` field, or for a non-DSN notice from the first
RFC 3463 code next to the address. A hard bounce is proof the address is dead, so it
ends every live membership of the address at once (``[bounces] hard_is_final``); soft
bounces score, Mailman-style.

Scoring (``[bounces]``): each day with a bounce adds that day's strongest weight once
(hard 1.0, soft 0.5); after ``window_days`` without a bounce the score starts from
zero; at ``threshold`` (5.0) the membership becomes ``bounced``. A bounce scores the
group of the edition it came from (VERP), else the group named by the returned
message's ``List-Id``, else every live membership of the address.

With ``[delivery] bounce_address`` (or a group's ``bounce_address``) set, only a report
that came back to the member's own signed VERP address acts; any other is recorded as
unverified, and a bounce asks for a probe (``actions.py``; ``delivery/probes.py``
sends it), whose own bounce alone ends the membership. A mail to the List-Unsubscribe
``mailto:`` address unsubscribes with the signed token in its subject, through the same
library call as the web's one-click unsubscribe; a forged token is recorded and ignored. A message too big or
nested too deep to read is reported as unreadable and, in a Maildir, quarantined
(``reading.py``); the others are processed.

Every action writes one Event (``bounce`` or ``complaint``) per membership, with the
report's Message-ID and the verdict; never an address. A report already recorded for
a subscriber (same Message-ID) is skipped, so processing a mailbox twice is harmless.
"""

from newsletter.feedback.actions import (
    EditionFeedback,
    Outcome,
    ProcessReport,
    Unreadable,
    per_edition,
    process,
    quarantine,
)
from newsletter.feedback.classify import Failure, Report, Verdict, classify
from newsletter.feedback.reading import Incoming, parse, read_inputs

__all__ = [
    "EditionFeedback",
    "Failure",
    "Incoming",
    "Outcome",
    "ProcessReport",
    "Report",
    "Unreadable",
    "Verdict",
    "classify",
    "parse",
    "per_edition",
    "process",
    "quarantine",
    "read_inputs",
]
