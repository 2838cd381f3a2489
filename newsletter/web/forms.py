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


def too_large() -> HTTPException:
    return HTTPException(413, "Request body too large: the forms of this site take 16 KB at most.")


async def limited_body(request: Request) -> Request:
    """The request with its body read; 413 (an HTTPException) once the body passes MAX_BODY.

    The body is counted as it arrives, so a chunked upload without a Content-Length
    is cut off as early as one that announces its size.
    """
    try:
        announced = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number.") from None
    if announced > MAX_BODY:
        raise too_large()
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large()
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


def client_address(request: Request) -> str | None:
    """The client's IP address: the connection's, or a trusted proxy's word (``[web] trusted_proxies``)."""
    return request.client.host if request.client else None
