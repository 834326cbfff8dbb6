"""Who may see the lane view and press its buttons: the bearer-token rules of MCP over HTTP.

Pure functions (no ROS, no Starlette), so the rules can be checked exhaustively.

- No token configured (a loopback bind without SKILL_LANES_TOKEN): like MCP, no token is
  asked for; Host/Origin checks (DNS rebinding) still guard the endpoints.
- A token configured: every lane view request needs one of
  `Authorization: Bearer <token>` (scripts, curl), or the cookie the page sets after it was
  opened once as `/lanes?token=<token>`. A browser cannot put a header on a page load or on
  an EventSource, so the token is traded once for an HttpOnly, SameSite=Strict cookie
  scoped to `/lanes` and the browser is redirected to `/lanes` (the token leaves the address
  bar and the history). The cookie holds an HMAC of the token, not the token: it opens the
  lane view only, never `/mcp`.
- Named clients (gateway.clients): any client's token (or the cookie of one) opens the view;
  which client it is decides which lanes it may stop (the lanes of its skills; an operator
  client every lane). `client_of` tells which.
- Buttons (POST) additionally need the header `X-Skill-Lanes: 1`: a cross-site form or
  `fetch` cannot send it without a CORS preflight, which the lane view never grants.
"""
from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from typing import Mapping, Optional

COOKIE_NAME = 'skill_lanes_view'
COOKIE_PATH = '/lanes'
ACTION_HEADER = 'x-skill-lanes'
_COOKIE_CONTEXT = b'skill_lanes lane view cookie v1'


def cookie_value(token: str) -> str:
    """What the cookie carries for `token`: an HMAC, so the cookie is not the MCP token."""
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def set_cookie_header(token: str, secure: bool) -> str:
    """The Set-Cookie value that remembers an accepted `?token=` for this browser session."""
    parts = [f'{COOKIE_NAME}={cookie_value(token)}', f'Path={COOKIE_PATH}', 'HttpOnly',
             'SameSite=Strict']
    if secure:
        parts.append('Secure')
    return '; '.join(parts)


def cookie_from_header(header: str) -> Optional[str]:
    """Our cookie's value from a Cookie header (None when absent or unparsable)."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header is simply no cookie
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def token_matches(supplied: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(supplied.encode(), token.encode())


def authorized(token: str, headers: Mapping[str, str]) -> bool:
    """Whether a request with these (lower-case) headers may use the lane view."""
    if not token:
        return True
    bearer = headers.get('authorization', '')
    if bearer.startswith('Bearer ') and token_matches(bearer[len('Bearer '):], token):
        return True
    cookie = cookie_from_header(headers.get('cookie', ''))
    return cookie is not None and hmac.compare_digest(cookie.encode(),
                                                      cookie_value(token).encode())


def client_of(tokens: Mapping[str, str], headers: Mapping[str, str]) -> Optional[str]:
    """The named client whose token (bearer) or cookie this request carries (None: none).

    tokens: client name -> token (unset ones absent). Every token is compared, each in
    constant time.
    """
    bearer = headers.get('authorization', '')
    supplied = bearer[len('Bearer '):] if bearer.startswith('Bearer ') else None
    cookie = cookie_from_header(headers.get('cookie', ''))
    by_bearer = by_cookie = None
    for name, token in sorted(tokens.items()):
        if not token:
            continue
        if supplied is not None and token_matches(supplied, token):
            by_bearer = name
        if cookie is not None and hmac.compare_digest(cookie.encode(),
                                                      cookie_value(token).encode()):
            by_cookie = name
    return by_bearer or by_cookie


def action_allowed(headers: Mapping[str, str]) -> bool:
    """A button press must come from our page's script (see module doc: CSRF)."""
    return headers.get(ACTION_HEADER) == '1'
