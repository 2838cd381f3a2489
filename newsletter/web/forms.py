"""Reading what a browser posts: a size limit counted as the body arrives.

Every form of the web app is small (an address, a name, a few boxes), so a body over
``MAX_BODY`` is refused before it is parsed, whether or not it announces its size.
"""

from starlette.exceptions import HTTPException
from starlette.requests import Request

from newsletter.web.security import Message

MAX_BODY = 16_384
# GET and HEAD only show a page; link scanners send both.
SAFE_METHODS = frozenset({"GET", "HEAD"})


def too_large(limit: int = MAX_BODY) -> HTTPException:
    return HTTPException(413, f"Request body too large: this form takes {limit // 1024:,} KB at most.")


async def limited_body(request: Request, limit: int = MAX_BODY) -> Request:
    """The request with its body read; 413 (an HTTPException) once the body passes ``limit``.

    The body is counted as it arrives, so a chunked upload without a Content-Length
    is cut off as early as one that announces its size.
    """
    try:
        announced = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number.") from None
    if announced > limit:
        raise too_large(limit)
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


def client_address(request: Request) -> str | None:
    """The client's IP address: the connection's, or a trusted proxy's word (``[web] trusted_proxies``)."""
    return request.client.host if request.client else None
