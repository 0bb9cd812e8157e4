"""HTTP status codes as named constants: ``status.NOT_FOUND == 404``.

Every constant is an ``http.HTTPStatus`` member, so it compares equal to its
integer and carries ``.phrase``; handlers can write ``ctx.text(status.OK, ...)``
without remembering numbers.  Names follow ``http.HTTPStatus`` (Python 3.10
spelling), plus the RFC 9110 names that newer Pythons added as aliases.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["HTTPStatus", "reason"]


# Informational
CONTINUE = HTTPStatus(100)
SWITCHING_PROTOCOLS = HTTPStatus(101)
PROCESSING = HTTPStatus(102)
EARLY_HINTS = HTTPStatus(103)

# Success
OK = HTTPStatus(200)
CREATED = HTTPStatus(201)
ACCEPTED = HTTPStatus(202)
NON_AUTHORITATIVE_INFORMATION = HTTPStatus(203)
NO_CONTENT = HTTPStatus(204)
RESET_CONTENT = HTTPStatus(205)
PARTIAL_CONTENT = HTTPStatus(206)
MULTI_STATUS = HTTPStatus(207)
ALREADY_REPORTED = HTTPStatus(208)
IM_USED = HTTPStatus(226)

# Redirection
MULTIPLE_CHOICES = HTTPStatus(300)
MOVED_PERMANENTLY = HTTPStatus(301)
FOUND = HTTPStatus(302)
SEE_OTHER = HTTPStatus(303)
NOT_MODIFIED = HTTPStatus(304)
USE_PROXY = HTTPStatus(305)
TEMPORARY_REDIRECT = HTTPStatus(307)
PERMANENT_REDIRECT = HTTPStatus(308)

# Client errors
BAD_REQUEST = HTTPStatus(400)
UNAUTHORIZED = HTTPStatus(401)
PAYMENT_REQUIRED = HTTPStatus(402)
FORBIDDEN = HTTPStatus(403)
NOT_FOUND = HTTPStatus(404)
METHOD_NOT_ALLOWED = HTTPStatus(405)
NOT_ACCEPTABLE = HTTPStatus(406)
PROXY_AUTHENTICATION_REQUIRED = HTTPStatus(407)
REQUEST_TIMEOUT = HTTPStatus(408)
CONFLICT = HTTPStatus(409)
GONE = HTTPStatus(410)
LENGTH_REQUIRED = HTTPStatus(411)
PRECONDITION_FAILED = HTTPStatus(412)
REQUEST_ENTITY_TOO_LARGE = HTTPStatus(413)
REQUEST_URI_TOO_LONG = HTTPStatus(414)
UNSUPPORTED_MEDIA_TYPE = HTTPStatus(415)
REQUESTED_RANGE_NOT_SATISFIABLE = HTTPStatus(416)
EXPECTATION_FAILED = HTTPStatus(417)
IM_A_TEAPOT = HTTPStatus(418)
MISDIRECTED_REQUEST = HTTPStatus(421)
UNPROCESSABLE_ENTITY = HTTPStatus(422)
LOCKED = HTTPStatus(423)
FAILED_DEPENDENCY = HTTPStatus(424)
TOO_EARLY = HTTPStatus(425)
UPGRADE_REQUIRED = HTTPStatus(426)
PRECONDITION_REQUIRED = HTTPStatus(428)
TOO_MANY_REQUESTS = HTTPStatus(429)
REQUEST_HEADER_FIELDS_TOO_LARGE = HTTPStatus(431)
UNAVAILABLE_FOR_LEGAL_REASONS = HTTPStatus(451)

# Server errors
INTERNAL_SERVER_ERROR = HTTPStatus(500)
NOT_IMPLEMENTED = HTTPStatus(501)
BAD_GATEWAY = HTTPStatus(502)
SERVICE_UNAVAILABLE = HTTPStatus(503)
GATEWAY_TIMEOUT = HTTPStatus(504)
HTTP_VERSION_NOT_SUPPORTED = HTTPStatus(505)
VARIANT_ALSO_NEGOTIATES = HTTPStatus(506)
INSUFFICIENT_STORAGE = HTTPStatus(507)
LOOP_DETECTED = HTTPStatus(508)
NOT_EXTENDED = HTTPStatus(510)
NETWORK_AUTHENTICATION_REQUIRED = HTTPStatus(511)

# RFC 9110 names (aliases in Python >= 3.13, spelled out here for older ones)
CONTENT_TOO_LARGE = HTTPStatus(413)
URI_TOO_LONG = HTTPStatus(414)
RANGE_NOT_SATISFIABLE = HTTPStatus(416)
UNPROCESSABLE_CONTENT = HTTPStatus(422)

__all__ += [name for name in list(globals()) if name.isupper() and name != "HTTPStatus"]


def reason(code: int) -> str:
    """The standard reason phrase of ``code`` (``""`` for unknown codes)."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""
