"""``Idempotency-Key`` on the POSTs that create things: a retry replays the first answer.

A script that lost the answer to a POST (a timeout, a dropped connection) sends it
again with the same key, and gets the answer the first request got, without a second
item, member or edition. Keys are per token and kept for a day. Before the work starts
the key is reserved (a row with status 0, under ``UNIQUE(token_id, key)``), so two
copies sent at once cannot both do the work: the second gets 409
``idempotency_in_progress`` (a reservation left by a process that died is taken over
after ten minutes). The same key with a different request (method, path,
query or body) is 422 ``idempotency_key_reused``. Only a success is kept: after a
refusal nothing was created, and the same key may be tried again.
"""

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlmodel import col, delete, select, update
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from newsletter.core.errors import ApiRefusal, ConflictError
from newsletter.core.models import ApiIdempotency
from newsletter.core.site import Site
from newsletter.web.api.framework import Call

KEPT = timedelta(days=1)
# A reservation this old belongs to a request that died before answering: free again.
ABANDONED = timedelta(minutes=10)
MAX_KEY = 200
REPLAYED = "idempotent-replayed"


class IdempotencyStore:
    def __init__(self, site: Site, clock: Callable[[], datetime]) -> None:
        self.site = site
        self.clock = clock

    async def once(self, call: Call, key: str, run: Callable[[], Awaitable[Response]]) -> Response:
        """The stored answer for ``key``, or ``run()``'s answer, kept if it is a success."""
        if not 0 < len(key) <= MAX_KEY or not key.isprintable():
            raise ApiRefusal(
                422, "invalid_request", f"the Idempotency-Key must be 1 to {MAX_KEY} printable characters"
            )
        request = call.request
        digest = hashlib.sha256(
            b"\n".join(
                [request.method.encode(), request.url.path.encode(), request.url.query.encode(), call.raw]
            )
        ).hexdigest()
        stored = await run_in_threadpool(self._reserve, call.token_id, key, digest)
        if stored is not None:
            return stored
        try:
            response = await run()
        except BaseException:
            await run_in_threadpool(self._release, call.token_id, key)
            raise
        if 200 <= response.status_code < 300:
            await run_in_threadpool(self._keep, call.token_id, key, response)
        else:
            await run_in_threadpool(self._release, call.token_id, key)
        return response

    def _reserve(self, token_id: int, key: str, digest: str) -> Response | None:
        """None if the key is now ours to use; else the answer to give (a replay or a refusal)."""
        now = self.clock()
        try:
            with self.site.transaction() as session:
                session.exec(delete(ApiIdempotency).where(col(ApiIdempotency.created_at) < now - KEPT))
                found = session.exec(
                    select(ApiIdempotency).where(
                        ApiIdempotency.token_id == token_id, ApiIdempotency.key == key
                    )
                ).one_or_none()
                if found is not None and found.status == 0 and found.created_at < now - ABANDONED:
                    # Reserved by a request that never finished (its process died): take it over.
                    session.delete(found)
                    session.flush()
                    found = None
                if found is None:
                    session.add(
                        ApiIdempotency(
                            token_id=token_id,
                            key=key,
                            request_digest=digest,
                            status=0,
                            body=b"",
                            created_at=now,
                        )
                    )
                    return None
        except ConflictError:
            # Another request reserved the same key a moment ago: it is still at work.
            raise ApiRefusal(
                409, "idempotency_in_progress", "a request with this Idempotency-Key is still being answered"
            ) from None
        if found.status == 0:
            raise ApiRefusal(
                409, "idempotency_in_progress", "a request with this Idempotency-Key is still being answered"
            )
        if found.request_digest != digest:
            raise ApiRefusal(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key for a new request",
            )
        return Response(
            found.body, status_code=found.status, media_type="application/json", headers={REPLAYED: "true"}
        )

    def _keep(self, token_id: int, key: str, response: Response) -> None:
        with self.site.transaction() as session:
            session.exec(
                update(ApiIdempotency)
                .where(col(ApiIdempotency.token_id) == token_id, col(ApiIdempotency.key) == key)
                .values(status=response.status_code, body=bytes(response.body))
            )

    def _release(self, token_id: int, key: str) -> None:
        with self.site.transaction() as session:
            session.exec(
                delete(ApiIdempotency).where(
                    col(ApiIdempotency.token_id) == token_id, col(ApiIdempotency.key) == key
                )
            )
