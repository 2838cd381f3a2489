"""Reading what a browser posts: a size limit counted as the body arrives.

Every form of the web app is small (an address, a name, a few boxes), so a body over
``MAX_BODY`` is refused before it is parsed, whether or not it announces its size.
"""

from starlette.requests import Request

from newsletter.web.security import Message

MAX_BODY = 16_384
# GET and HEAD only show a page; link scanners send both.
SAFE_METHODS = frozenset({"GET", "HEAD"})


async def limited_body(request: Request) -> Request | None:
    """The request with its body read, or None once the body passes MAX_BODY.

    The body is counted as it arrives, so a chunked upload without a Content-Length
    is cut off as early as one that announces its size.
    """
    try:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return None
    except ValueError:
        return None
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


def client_address(request: Request) -> str | None:
    """The client's IP address as the server saw it (behind the proxy: as the proxy said)."""
    return request.client.host if request.client else None
