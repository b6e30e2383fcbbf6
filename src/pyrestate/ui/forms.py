"""Forms posted by the pages: their fields, and a check that they come from the UI itself.

The admin API takes JSON only, which a foreign web page cannot send without the
browser asking first (CORS); a form post needs no such question, so without the check
any page a user visits could make their browser cancel invocations or register
deployments through the UI's forms.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from pyrestate.admin.web import Request
from pyrestate.ui.html import UiError


def same_origin(req: Request) -> None:
    """UiError 403 if a browser says the post comes from another site."""
    site = req.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise UiError(403, "Refused", "this form may only be sent from the pyrestate UI")
    origin = req.headers.get("origin")
    if origin is None:
        return  # not a browser's cross-site post (browsers send Origin with every POST)
    if origin == "null" or urlsplit(origin).netloc != req.headers.get("host"):
        raise UiError(403, "Refused", "this form may only be sent from the pyrestate UI")


def form(req: Request) -> dict[str, str]:
    """The fields of a posted form (checked to come from the UI); the last value wins."""
    same_origin(req)
    kind = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UiError(415, "Unsupported form", "send the form as application/x-www-form-urlencoded")
    try:
        text = req.body.decode()
    except UnicodeDecodeError:
        raise UiError(400, "Bad form", "the form is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def query(req: Request) -> dict[str, str]:
    """The query string's parameters; the last value wins."""
    return dict(req.query)
