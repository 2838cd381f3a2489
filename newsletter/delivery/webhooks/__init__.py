"""Outbound webhooks: the audit events endpoints subscribe to, signed and posted from a durable queue.

::

    a change + audit.record ──(same transaction)──> webhook_event        core/audit.py
    dispatch: each event -> one webhook_delivery per endpoint that wants it,
              the event deleted, in one transaction                      dispatch.py
    deliver:  claim a due row under a lease, sign, POST through the safe
              fetcher's address policy, record the answer; retry with
              exponential backoff up to the endpoint's max_attempts       sender.py, signing.py
    list:     endpoints and their last deliveries (CLI, workspace)       listing.py

Nothing is lost if the process dies: an event is captured with its change, dispatch
deletes it only in the transaction that queues its deliveries, and a claimed row whose
lease lapsed is claimed again. Nothing is delivered twice to an endpoint once its
success is recorded; the one possible repeat is a POST the receiver accepted just
before a crash, before its answer was recorded (the ``webhook-id`` header is the same,
so the receiver can tell).
"""

from newsletter.delivery.webhooks.dispatch import dispatch
from newsletter.delivery.webhooks.listing import EndpointView, endpoints
from newsletter.delivery.webhooks.sender import RoundReport, deliver, run

__all__ = ["EndpointView", "RoundReport", "deliver", "dispatch", "endpoints", "run"]
